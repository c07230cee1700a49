"""SQL fragments of a movie's representation, shared by `selectors.movie_queryset` and the bench baseline.

No Django imports: bench/baseline_app.py sends the very same SQL without Django.
"""

# Everything a movie's representation shows beyond its own columns, as correlated subqueries, so a page of any
# size is one SQL statement. JSON is built by PostgreSQL and handed over as text (orjson parses it fastest).
GENRES_SQL = """ARRAY(
    SELECT g.slug FROM movies_movie_genres mg JOIN movies_genre g ON g.id = mg.genre_id
    WHERE mg.movie_id = movies_movie.id ORDER BY g.slug)"""
DIRECTORS_SQL = """(
    SELECT coalesce(json_agg(json_build_object('id', p.id, 'name', p.name) ORDER BY p.name, p.id), '[]')::text
    FROM movies_movie_directors md JOIN movies_person p ON p.id = md.person_id
    WHERE md.movie_id = movies_movie.id)"""
CAST_SQL = """(
    SELECT coalesce(json_agg(json_build_object(
        'person', json_build_object('id', p.id, 'name', p.name), 'character', c.character, 'order', c."order"
    ) ORDER BY c."order"), '[]')::text
    FROM movies_cast c JOIN movies_person p ON p.id = c.person_id
    WHERE c.movie_id = movies_movie.id)"""
