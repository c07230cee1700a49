"""Several sources on one catalogue (issue 15): entity resolution, precedence and provenance, the fixed point.

The bundled sample (ours, with IMDb ids but no nm ids), a file of ours without IMDb ids, an IMDb folder (principals:
the top-billed only) and a MovieLens folder are loaded in several orders on top of the sample and of a curator's
edits (API PATCH). Whatever the order: no twin movie or person where the sources agree on identity, the curator's
edits stay, ambiguities are reported, and a second pass over every source changes nothing.
"""

from __future__ import annotations

import io
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from movies.models import CastMember, Movie, Person
from movies.tests.test_import import run, write_tsv

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "movies" / "fixtures" / "sample_movies.json"
MOVIES = "/api/v1/movies/"


def imdb_folder(tmp_path: Path) -> Path:
    """IMDb's view: Amélie with its accent, The Matrix without Thriller, The Kid's two top-billed, Keanu's nm id."""
    folder = tmp_path / "imdb"
    folder.mkdir()
    write_tsv(
        folder / "title.basics.tsv",
        "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres",
        [
            "tt0133093\tmovie\tThe Matrix\tThe Matrix\t0\t1999\t\\N\t136\tAction,Sci-Fi",
            "tt0211915\tmovie\tAmélie\tLe fabuleux destin d'Amélie Poulain\t0\t2001\t\\N\t122\tComedy,Romance",
            "tt0012349\tmovie\tThe Kid\tThe Kid\t0\t1921\t\\N\t68\tComedy,Drama,Family",
            "tt0234215\tmovie\tThe Matrix Reloaded\tThe Matrix Reloaded\t0\t2003\t\\N\t138\tAction,Sci-Fi",
        ],
    )
    write_tsv(
        folder / "title.crew.tsv",
        "tconst\tdirectors\twriters",
        [
            "tt0133093\tnm0905154,nm0905152\t\\N",
            "tt0211915\tnm0000466\t\\N",
            "tt0012349\tnm0000122\t\\N",
            "tt0234215\tnm0905154,nm0905152\t\\N",
        ],
    )
    write_tsv(
        folder / "title.principals.tsv",
        "tconst\tordering\tnconst\tcategory\tjob\tcharacters",
        [
            'tt0133093\t1\tnm0000206\tactor\t\\N\t["Neo"]',
            'tt0211915\t1\tnm0851582\tactress\t\\N\t["Amélie Poulain"]',
            'tt0012349\t1\tnm0000122\tactor\t\\N\t["A Tramp"]',
            'tt0012349\t2\tnm0001067\tactor\t\\N\t["The Kid"]',
            'tt0234215\t1\tnm0000206\tactor\t\\N\t["Neo"]',
        ],
    )
    write_tsv(
        folder / "name.basics.tsv",
        "nconst\tprimaryName\tbirthYear\tdeathYear\tprimaryProfession\tknownForTitles",
        [
            "nm0905154\tLana Wachowski\t\\N\t\\N\t\\N\t\\N",
            "nm0905152\tLilly Wachowski\t\\N\t\\N\t\\N\t\\N",
            "nm0000206\tKeanu Reeves\t\\N\t\\N\t\\N\t\\N",
            "nm0000466\tJean-Pierre Jeunet\t\\N\t\\N\t\\N\t\\N",
            "nm0851582\tAudrey Tautou\t\\N\t\\N\t\\N\t\\N",
            "nm0000122\tCharles Chaplin\t\\N\t\\N\t\\N\t\\N",
            "nm0001067\tJackie Coogan\t\\N\t\\N\t\\N\t\\N",
        ],
    )
    return folder


def movielens_folder(tmp_path: Path) -> Path:
    """MovieLens' view: "Amelie (Fabuleux destin...)", The Matrix with Thriller, The Kid."""
    folder = tmp_path / "movielens"
    folder.mkdir()
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        '2571,"Matrix, The (1999)",Action|Sci-Fi|Thriller\n'
        '4973,"Amelie (Fabuleux destin d\'Amélie Poulain, Le) (2001)",Comedy|Romance\n'
        '3310,"Kid, The (1921)",Comedy|Drama\n',
        encoding="utf-8",
    )
    (folder / "links.csv").write_text(
        "movieId,imdbId,tmdbId\n2571,0133093,603\n4973,0211915,194\n3310,0012349,10098\n", encoding="utf-8"
    )
    return folder


def no_ids_file(tmp_path: Path) -> Path:
    """Ours, without any IMDb id: titles as another catalogue writes them, an ambiguous row, a new film."""
    rows = [
        {"title": "Matrix, The", "year": 1999, "directors": ["Lana Wachowski"], "cast": [{"name": "keanu reeves"}]},
        {"title": "CASABLANCA", "year": 1942, "runtime": 102, "genres": ["drama", "romance", "war"]},
        {"title": "Doppel", "year": 2001, "runtime": 90},  # two curators' movies are "Doppel" (2001): ambiguous
        {"title": "Doppel", "year": 2001, "directors": ["Ann Second"], "runtime": 91, "imdb_id": None, "id": "x2"},
        {"title": "Unlisted Film", "year": 2010, "cast": [{"name": "Keanu Reeves", "character": "Himself"}]},
    ]
    path = tmp_path / "no_ids.json"
    path.write_text("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n", encoding="utf-8")  # a row a line
    return path


def catalogue() -> dict[str, Any]:
    """Everything the sources write: every movie (with its version) and every person."""
    movies = {}
    for movie in Movie.objects.prefetch_related("genres", "directors", "cast__person").order_by("id"):
        movies[movie.pk] = (
            movie.title,
            movie.year,
            movie.runtime,
            movie.overview,
            movie.imdb_id,
            movie.version,
            sorted(genre.slug for genre in movie.genres.all()),
            sorted(p.pk for p in movie.directors.all()),
            [(c.person_id, c.character) for c in movie.cast.order_by("order")],
            movie.field_sources,
        )
    people = sorted(Person.objects.values_list("id", "name", "imdb_id"))
    return {"movies": movies, "people": people}


@pytest.fixture
def curated(curator_client: APIClient) -> dict[str, int]:
    """The sample, then a curator's edits through the API: Casablanca's runtime, two id-less "Doppel" (2001)."""
    assert run(SAMPLE)[0] == 0
    casablanca = Movie.objects.get(imdb_id="tt0034583")
    response = curator_client.patch(
        f"{MOVIES}{casablanca.pk}/", {"runtime": 103, "overview": "Curated.", "version": 1}, format="json"
    )
    assert response.status_code == 200, response.content
    first = curator_client.post(MOVIES, {"title": "Doppel", "year": 2001}, format="json")
    second = curator_client.post(MOVIES, {"title": "Doppel", "year": 2001}, format="json")
    assert (first.status_code, second.status_code) == (201, 201)
    return {"casablanca": casablanca.pk, "doppel": first.json()["id"], "doppel2": second.json()["id"]}


ORDERS = [
    ("no_ids", "imdb", "movielens"),
    ("movielens", "imdb", "no_ids"),
    ("imdb", "movielens", "no_ids"),
    ("movielens", "no_ids", "imdb"),
]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(order) for order in ORDERS])
def test_sources_in_any_order_merge_and_reach_a_fixed_point(
    tmp_path: Path, curated: dict[str, int], order: tuple[str, ...]
) -> None:
    sources = {"no_ids": no_ids_file(tmp_path), "imdb": imdb_folder(tmp_path), "movielens": movielens_folder(tmp_path)}
    errors = tmp_path / "errors.jsonl"
    reports: list[dict[str, Any]] = []
    for name in order:
        run(sources[name], "--errors", errors)
        reports += [json.loads(line) for line in errors.read_text().splitlines()]

    # No twin where the sources agree on identity: one movie per (title, year) but the curator's two "Doppel".
    pairs = Counter(Movie.objects.values_list("year", "title"))
    assert {pair: n for pair, n in pairs.items() if n > 1} == {(2001, "Doppel"): 2}
    assert Movie.objects.count() == 221 + 2 + 2  # the sample, the two Doppel, Reloaded (IMDb), Unlisted Film (ours)
    assert Person.objects.filter(name__iexact="Keanu Reeves").count() == 1
    keanu = Person.objects.get(name="Keanu Reeves")
    assert keanu.imdb_id == "nm0000206"  # linked, not twinned
    assert Person.objects.filter(name="Charles Chaplin").count() == 1
    assert Person.objects.filter(name="Lana Wachowski").get().imdb_id == "nm0905154"
    # The curator's edits stay.
    casablanca = Movie.objects.get(pk=curated["casablanca"])
    assert (casablanca.runtime, casablanca.overview, casablanca.title) == (103, "Curated.", "Casablanca")
    assert casablanca.field_sources["runtime"] == "curator"
    # The Kid keeps its four from the sample (ours ranks above IMDb's principals).
    kid = Movie.objects.get(imdb_id="tt0012349")
    assert [c.person.name for c in kid.cast.order_by("order")] == [
        "Charles Chaplin",
        "Edna Purviance",
        "Jackie Coogan",
        "Carl Miller",
    ]
    # The sample's titles (ours) outrank IMDb's and MovieLens', and IMDb's genres MovieLens': whatever the order.
    amelie = Movie.objects.get(imdb_id="tt0211915")
    assert (amelie.title, amelie.field_sources["title"]) == (
        "Le Fabuleux Destin d'Amélie Poulain",
        "ours:sample_movies.json",
    )
    matrix = Movie.objects.get(imdb_id="tt0133093")
    assert sorted(matrix.genres.values_list("slug", flat=True)) == ["action", "science-fiction"]
    assert matrix.title == "The Matrix"
    assert list(Movie.objects.get(title="Unlisted Film").cast.values_list("person_id", flat=True)) == [keanu.pk]
    # The ambiguous rows are reported with their candidates and not written (neither Doppel has a director).
    ambiguous = [r for r in reports if r["reason"].startswith("ambiguous")]
    assert [(r["file"], r["line"], r["field"]) for r in ambiguous] == [
        ("no_ids.json", 4, "title"),
        ("no_ids.json", 5, "title"),
    ]
    assert f"movie {curated['doppel']} 'Doppel'" in ambiguous[0]["reason"]
    assert f"movie {curated['doppel2']} 'Doppel'" in ambiguous[0]["reason"]
    assert {Movie.objects.get(pk=curated[key]).runtime for key in ("doppel", "doppel2")} == {None}

    before = catalogue()
    for name in reversed(order):  # the second pass, in another order
        _code, out, _ = run(sources[name])
        assert "updated: 0," in out, (name, out)
    assert catalogue() == before


def test_a_director_breaks_a_tie_between_movies_of_the_same_title_and_year(
    tmp_path: Path, curated: dict[str, int], curator_client: APIClient
) -> None:
    second = Movie.objects.get(pk=curated["doppel2"])
    ann = curator_client.post("/api/v1/people/", {"name": "Ann Second"}, format="json").json()
    response = curator_client.patch(
        f"{MOVIES}{second.pk}/", {"directors": [ann["id"]], "version": second.version}, format="json"
    )
    assert response.status_code == 200, response.content
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"title": "DOPPEL", "year": 2001, "directors": ["ann second"], "runtime": 91}]))

    code, out, _ = run(path)

    assert (code, "updated: 1," in out) == (0, True)
    assert Movie.objects.get(pk=second.pk).runtime == 91
    assert Movie.objects.get(pk=curated["doppel"]).runtime is None


def test_imdb_and_movielens_alternating_no_longer_flip_flop(tmp_path: Path) -> None:
    """The issue's flip-flop: Amélie renamed back and forth, a genre added and removed on The Matrix, every run."""
    imdb, movielens = imdb_folder(tmp_path), movielens_folder(tmp_path)
    run(movielens)
    assert Movie.objects.get(imdb_id="tt0211915").title == "Amelie"
    run(imdb)
    before = catalogue()
    for source in (movielens, imdb, movielens):
        _code, out, _ = run(source)
        assert "updated: 0," in out
    assert catalogue() == before
    assert Movie.objects.get(imdb_id="tt0211915").title == "Amélie"
    assert sorted(Movie.objects.get(imdb_id="tt0133093").genres.values_list("slug", flat=True)) == [
        "action",
        "science-fiction",
    ]


def test_precedence_is_configurable_per_run(tmp_path: Path) -> None:
    imdb, movielens = imdb_folder(tmp_path), movielens_folder(tmp_path)
    run(imdb)
    run(movielens, "--precedence", "movielens,ours,imdb")
    assert Movie.objects.get(imdb_id="tt0211915").title == "Amelie"
    assert Movie.objects.get(imdb_id="tt0211915").field_sources["title"] == "movielens"
    code, _, err = run(movielens, "--precedence", "ours,netflix")
    assert code == 2
    assert "--precedence" in err


def test_imdb_principals_merge_into_a_longer_cast(tmp_path: Path) -> None:
    """A cast whose source is unknown (loaded before provenance was kept) gets IMDb's top-billed merged in."""
    assert run(SAMPLE)[0] == 0
    Movie.objects.update(field_sources={})  # as the catalogue was before migration 0009
    kid = Movie.objects.get(imdb_id="tt0012349")

    _code, out, _ = run(imdb_folder(tmp_path))

    kid.refresh_from_db()
    assert [(c.person.name, c.person.imdb_id, c.character) for c in kid.cast.order_by("order")] == [
        ("Charles Chaplin", "nm0000122", "A Tramp"),
        ("Edna Purviance", None, "The Woman"),
        ("Jackie Coogan", "nm0001067", "The Kid"),
        ("Carl Miller", None, "The Man"),
    ]
    assert kid.field_sources["cast"] == "imdb"
    assert "merged: 1," in out or kid.version == 1  # the characters were already IMDb's: nothing to merge
    assert CastMember.objects.filter(person__name="Keanu Reeves").values("person").distinct().count() == 1


def test_dry_run_reports_what_would_happen_and_writes_nothing(tmp_path: Path, curated: dict[str, int]) -> None:
    before = catalogue()

    code, out, err = run(imdb_folder(tmp_path), "--dry-run")

    assert code == 0
    assert "dry run, nothing written: valid: 4, would be created: 1, updated: 0, unchanged: 3, linked: 7," in out
    assert "linked: " in out
    assert catalogue() == before
    code, out, err = run(no_ids_file(tmp_path), "--dry-run")
    assert code == 1
    assert "ambiguous: 2," in out
    assert "no_ids.json:4: title: ambiguous: 2 movies match 'Doppel' (2001)" in err
    assert catalogue() == before


def test_two_of_our_files_that_disagree_do_not_take_turns(tmp_path: Path) -> None:
    """Both rank as ours: the first to set a field keeps it; each file may still change what it set itself."""
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps([{"title": "Alpha", "year": 2001, "runtime": 90}]))
    second.write_text(json.dumps([{"title": "ALPHA", "year": 2001, "runtime": 95, "overview": "From second."}]))
    run(first)
    run(second)
    before = catalogue()
    for path in itertools.islice(itertools.cycle((first, second)), 4):
        run(path)
    assert catalogue() == before
    movie = Movie.objects.get()
    assert (movie.title, movie.runtime, movie.overview, movie.version) == ("Alpha", 90, "From second.", 2)
    first.write_text(json.dumps([{"title": "Alpha", "year": 2001, "runtime": 91}]))
    run(first)
    assert Movie.objects.get().runtime == 91


# ---- the export's round trip -------------------------------------------------------------------


def export_rows() -> list[dict[str, Any]]:
    """The catalogue in the export's shape (with each movie's `id`), to compare two catalogues by."""
    rows = []
    for movie in Movie.objects.prefetch_related("genres", "directors", "cast__person").order_by("id"):
        rows.append(
            {
                "id": movie.pk,
                "title": movie.title,
                "year": movie.year,
                "runtime": movie.runtime,
                "overview": movie.overview,
                "imdb_id": movie.imdb_id,
                "genres": sorted(genre.slug for genre in movie.genres.all()),
                "directors": [{"name": p.name, "imdb_id": p.imdb_id} for p in movie.directors.all()],
                "cast": [
                    {"name": c.person.name, "imdb_id": c.person.imdb_id, "character": c.character}
                    for c in movie.cast.order_by("order")
                ],
            }
        )
    return rows


def shape() -> list[tuple[Any, ...]]:
    """The catalogue without its ids and versions: what a round trip must reproduce."""
    return sorted(
        (
            row["title"],
            row["year"],
            row["runtime"],
            row["overview"],
            row["imdb_id"] or "",
            row["genres"],
            sorted((d["name"], d["imdb_id"] or "") for d in row["directors"]),
            [(c["name"], c["imdb_id"] or "", c["character"]) for c in row["cast"]],
        )
        for row in export_rows()
    )


@pytest.mark.parametrize("name", ["export.jsonl", "export.csv.gz", "export.json"])
def test_an_export_round_trips_into_an_empty_catalogue_and_onto_its_own(
    tmp_path: Path, curator_client: APIClient, name: str
) -> None:
    """Two id-less movies with the same title and year (the API accepts them) survive; re-importing changes nothing."""
    for _ in range(2):
        assert curator_client.post(MOVIES, {"title": "Twin", "year": 2000}, format="json").status_code == 201
    assert run(SAMPLE)[0] == 0
    assert (
        run(imdb_folder(tmp_path))[0] == 0
    )  # The Matrix Reloaded's fields come from IMDb: the export must not claim them
    path = tmp_path / name
    call_command("export_movies", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    before, expected = catalogue(), shape()

    code, out, _ = run(path)  # onto its own catalogue
    assert (code, "created: 0, updated: 0, unchanged: 224," in out) == (0, True)
    assert catalogue() == before

    Movie.objects.all().delete()
    Person.objects.all().delete()
    code, out, _ = run(path)  # into an empty one
    assert (code, "created: 224," in out) == (0, True)
    assert shape() == expected
    assert Movie.objects.filter(title="Twin", year=2000).count() == 2


def test_an_export_of_another_catalogue_never_matches_by_id_alone(tmp_path: Path) -> None:
    """Its ids are its own: one that happens to be a movie's here hits nothing; two rows with distinct ids are
    two movies even with the same title and year."""
    assert run(SAMPLE)[0] == 0
    some = Movie.objects.order_by("id").first()
    assert some is not None
    before = (some.title, some.version)
    path = tmp_path / "other.json"
    path.write_text(
        json.dumps(
            [
                {"id": some.pk, "title": "Something Else", "year": 2011, "runtime": 80},
                {"id": some.pk + 1, "title": "Something Else", "year": 2011, "runtime": 81},
            ]
        )
    )

    code, out, _ = run(path)

    assert (code, "created: 2," in out) == (0, True)
    some.refresh_from_db()
    assert (some.title, some.version) == before
    assert sorted(m.runtime or 0 for m in Movie.objects.filter(title="Something Else")) == [80, 81]
    # Loaded again, nothing tells which of the two is which (their ids are another catalogue's): both rows are
    # reported as ambiguous, and nothing is duplicated or guessed.
    code, out, _ = run(path)
    assert (code, "created: 0, updated: 0, unchanged: 0, linked: 0, merged: 0, ambiguous: 2," in out) == (1, True)
    assert Movie.objects.filter(title="Something Else").count() == 2


def test_imdb_credits_of_new_movies_link_the_one_person_of_that_name(tmp_path: Path) -> None:
    """New movies' credits are written in SQL: a person without an nm id whose name is the only one of its kind
    learns the id; a name two people share is not guessed (a new person with the nm id is created)."""
    keanu = Person.objects.create(name="KEANU REEVES")
    twins = [Person.objects.create(name="Jackie Coogan") for _ in range(2)]

    assert run(imdb_folder(tmp_path))[0] == 0

    keanu.refresh_from_db()
    assert keanu.imdb_id == "nm0000206"
    assert Person.objects.filter(name__iexact="keanu reeves").count() == 1
    assert {p.imdb_id for p in Person.objects.filter(pk__in=[t.pk for t in twins])} == {None}
    assert Person.objects.get(imdb_id="nm0001067").name == "Jackie Coogan"
    reloaded = Movie.objects.get(imdb_id="tt0234215")
    assert list(reloaded.cast.values_list("person_id", flat=True)) == [keanu.pk]


def test_a_movie_a_curator_created_gets_its_empty_fields_from_an_import(
    tmp_path: Path, curator_client: APIClient
) -> None:
    created = curator_client.post(MOVIES, {"title": "Solo", "year": 2005, "runtime": 99}, format="json").json()
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{"title": "Solo", "year": 2005, "runtime": 100, "overview": "From a file."}]))

    assert run(path)[0] == 0

    movie = Movie.objects.get(pk=created["id"])
    assert (movie.runtime, movie.overview) == (99, "From a file.")
    assert movie.field_sources == {
        "title": "curator",
        "year": "curator",
        "runtime": "curator",
        "overview": "ours:m.json",
    }
