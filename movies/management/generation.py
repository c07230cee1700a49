"""What `generate_movies` writes: deterministic synthetic titles, overviews, names and popularity for one seed.

The word tables and the Generator that draws from them; the command (movies/management/commands/generate_movies.py)
turns its draws into rows and loads them with COPY.
"""

# Word lists read best as one string each, and include other scripts on purpose:
# ruff: noqa: SIM905, RUF001

from __future__ import annotations

import random

GENRE_WEIGHTS = {
    "drama": 25,
    "comedy": 18,
    "thriller": 9,
    "action": 9,
    "romance": 8,
    "crime": 7,
    "horror": 6,
    "documentary": 6,
    "adventure": 5,
    "mystery": 4,
    "family": 4,
    "fantasy": 4,
    "science-fiction": 4,
    "animation": 3,
    "biography": 3,
    "history": 3,
    "music": 2,
    "war": 2,
    "western": 2,
    "musical": 1,
    "sport": 1,
    "film-noir": 1,
}

ADJECTIVES = (
    "Dark Last Lost Silent Broken Hidden Golden Red Black White Wild Secret Final Eternal Frozen Burning Deadly "
    "Little Great Crimson Savage Midnight Endless Forgotten Sacred Hollow Iron Bitter Quiet Electric Restless "
    "Distant Sweet Dangerous Perfect Strange Lonely Brave Fallen Rising Shattered Infinite Bright Cold Blue Green"
).split()
NOUNS = (
    "Night Love City Man Woman Heart Shadow River Dream Road House Fire War Sky Storm Blood Star Kingdom King "
    "Queen Game Secret Island Summer Winter Ghost Stranger Journey Promise Truth Empire Garden Moon Sea Voice "
    "Mirror Machine Planet Hunter Soldier Angel Devil Wolf Dragon Heist Affair Escape Legacy Matrix Code Storm "
    "Memory Horizon Paradise Mountain Desert Forest Street Bridge Train Letter Song Dance Crown Sword Witness "
    "Detective Doctor Teacher Family Brother Sister Daughter Son Mother Father Friend Enemy Rebel Outlaw Spy"
).split()
PATTERNS = (
    "The {A} {N}",
    "{N} of the {N2}",
    "{A} {N}",
    "The {N}",
    "{P}",
    "{P}'s {N}",
    "The {N} of {P}",
    "{A} {N} {roman}",
    "{N} in {P}",
    "Return to {P}",
)
FOREIGN_TITLES = (
    "La {fr} de {P}",
    "Der {de} von {P}",
    "El {es} de {P}",
    "{ja}の{ja2}",
    "{ru} и {ru2}",
    "Le {fr} et la {fr2}",
)
FRENCH = "nuit vie mer maison guerre ville route femme".split()
GERMAN = "Himmel Krieg Wald Traum Sommer Fluss Mann".split()
SPANISH = "amor sangre camino silencio fuego secreto".split()
JAPANESE = "夜 海 桜 風 夢 刀 月 雪 星 城".split()
RUSSIAN = "Брат Война Мир Море Ночь Снег Город Сердце".split()
SYLLABLES = "ka lo ri an mel dor vin sa tha ren bel cor da ly mi nor est ul fa gre ion ta be ro su vel ar".split()
FIRST_NAMES = (
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan Joseph "
    "Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Akira Yuki Hiroshi "
    "Ana Sofía Mateo Lucía Chloé Élodie François Jürgen Björn Zoë Ольга Иван Ming Wei Priya Arjun Fatima Omar"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson Walker Young "
    "Tanaka Suzuki Müller Schmidt Dubois Lefèvre Rossi Bianchi Nowak Kowalski Петров Иванова Chen Wang Kumar Singh"
).split()
OVERVIEW_SUBJECTS = (
    "A detective",
    "A young woman",
    "An aging boxer",
    "Two brothers",
    "A lonely writer",
    "A family",
    "A group of friends",
    "A retired spy",
    "A teacher",
    "A small-town doctor",
    "An ambitious lawyer",
    "A runaway teenager",
)
OVERVIEW_VERBS = (
    "must confront",
    "falls in love with",
    "hunts",
    "uncovers",
    "tries to escape",
    "searches for",
    "is haunted by",
    "fights",
    "returns to",
    "betrays",
)
OVERVIEW_OBJECTS = (
    "a dangerous secret",
    "the truth about their past",
    "a mysterious stranger",
    "a ruthless gang",
    "a forgotten city",
    "an old promise",
    "a corrupt empire",
    "the ghost of a friend",
    "a stolen fortune",
    "an impossible dream",
)
OVERVIEW_TAILS = (
    "before it is too late.",
    "during one long summer.",
    "in the heart of {P}.",
    "while a storm closes in.",
    "and nothing will ever be the same.",
    "across a divided country.",
    "with the help of an unlikely ally.",
    "as a war tears everything apart.",
)
ROMAN = ("II", "III", "IV", "2", "Returns", "Reloaded")


class Generator:
    """Deterministic rows for one seed; ids start after the given bases."""

    def __init__(self, *, seed: int, people: int, users: int, genre_ids: dict[str, int]) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (synthetic data, reproducible by design)
        self.people = people
        self.users = users
        self.genre_slugs = [slug for slug in GENRE_WEIGHTS if slug in genre_ids] or sorted(genre_ids)
        self.genre_ids = [genre_ids[slug] for slug in self.genre_slugs]
        self.genre_weights = [GENRE_WEIGHTS.get(slug, 1) for slug in self.genre_slugs]
        rng = self.rng
        # Made-up proper names (places, heroes): a large vocabulary makes search terms realistically selective.
        self.proper_names = sorted(
            {"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize() for _ in range(6000)}
        )

    def proper(self) -> str:
        return self.rng.choice(self.proper_names)

    def title(self) -> str:
        rng = self.rng
        if rng.random() < 0.06:
            pattern = rng.choice(FOREIGN_TITLES)
            return pattern.format(
                fr=rng.choice(FRENCH),
                fr2=rng.choice(FRENCH),
                de=rng.choice(GERMAN),
                es=rng.choice(SPANISH),
                ja=rng.choice(JAPANESE),
                ja2=rng.choice(JAPANESE),
                ru=rng.choice(RUSSIAN),
                ru2=rng.choice(RUSSIAN),
                P=self.proper(),
            )
        return rng.choice(PATTERNS).format(
            A=rng.choice(ADJECTIVES),
            N=rng.choice(NOUNS),
            N2=rng.choice(NOUNS),
            P=self.proper(),
            roman=rng.choice(ROMAN),
        )

    def overview(self) -> str:
        rng = self.rng
        first = f"{rng.choice(OVERVIEW_SUBJECTS)} {rng.choice(OVERVIEW_VERBS)} {rng.choice(OVERVIEW_OBJECTS)}"
        tail = rng.choice(OVERVIEW_TAILS).format(P=self.proper())
        second = f"{self.proper()} {rng.choice(OVERVIEW_VERBS)} {rng.choice(OVERVIEW_OBJECTS)} {tail}"
        return f"{first} {rng.choice(OVERVIEW_TAILS).format(P=self.proper())} {second}"

    def person_name(self) -> str:
        return f"{self.rng.choice(FIRST_NAMES)} {self.rng.choice(LAST_NAMES)}"

    def popular_person(self, pool: int) -> int:
        """A 0-based person index; low indexes are much more popular (a few people are in very many films)."""
        return min(pool - 1, int(pool * self.rng.random() ** 2.5))

    def rating_count(self) -> int:
        """Heavy-tailed: ~60% of movies have no rating, a few have thousands."""
        return min(self.users, int(self.rng.paretovariate(1.4)) - 1)
