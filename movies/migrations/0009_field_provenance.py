"""Field provenance and the importers' matching keys (docs/loading-data.md).

`Movie.field_sources` remembers where each field's value came from, so that an import never overwrites what a
curator or a higher-ranked source set. `movies_match_key(text)` is the one definition of a normalised title or
name: lower case, accents and punctuation dropped, a trailing ", The" (", A", ", An") moved to the front, spaces
collapsed. It is IMMUTABLE (built-in immutable functions only) so that two expression indexes can serve it: movies
by (key of the title, year), people by key of the name. Existing movies start with no provenance: their fields
rank below every source until a source or a curator writes them.
"""

from django.db import migrations, models

MATCH_KEY_SQL = r"""
CREATE FUNCTION movies_match_key(text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT btrim(regexp_replace(
    regexp_replace(
        regexp_replace(lower(normalize($1, NFKD)), '[\u0300-\u036f]', '', 'g'),
        '^(.*), *(the|a|an)$', '\2 \1'),
    '[^[:alnum:]]+', ' ', 'g'))
$$
"""


class Migration(migrations.Migration):
    dependencies = [
        ("movies", "0008_unaccent_search"),
    ]

    operations = [
        migrations.RunSQL(MATCH_KEY_SQL, "DROP FUNCTION movies_match_key(text)"),
        migrations.AddField(
            model_name="movie",
            name="field_sources",
            field=models.JSONField(db_default=models.Value({}, models.JSONField()), default=dict, editable=False),
        ),
        migrations.AddIndex(
            model_name="movie",
            index=models.Index(
                models.Func(models.F("title"), function="movies_match_key", output_field=models.TextField()),
                models.F("year"),
                name="movie_title_key_year",
            ),
        ),
        migrations.AddIndex(
            model_name="person",
            index=models.Index(
                models.Func(models.F("name"), function="movies_match_key", output_field=models.TextField()),
                name="person_name_key",
            ),
        ),
    ]
