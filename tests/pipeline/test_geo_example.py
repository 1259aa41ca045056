"""The geo example (examples/geo): sentence → entities → gazetteer coordinates → constrained JSON → GeoJSON → map.

Its pure steps are checked without a model; the gazetteer is the real tool server on a loopback port; the
slow test runs `llmkit run` on the example with the default model, as its README says to.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_openai import ScriptedModel

from llmkit.jsonl import read_jsonl, write_jsonl
from llmkit.pipeline import load_pipeline, run_pipeline
from llmkit.pipeline.client import serve_in_process
from llmkit.toolserver.app import create_app
from llmkit.toolserver.gazetteer import Gazetteer
from llmkit.user_code import load_python_file

ROOT = Path(__file__).resolve().parents[2]
GEO = ROOT / "examples" / "geo"
LLMKIT = Path(sys.executable).parent / "llmkit"
geo = load_python_file(GEO / "geo.py", "geo-example")

BEIJING, TIANJIN = (116.3972, 39.9075), (117.1767, 39.1422)  # the gazetteer's shipped coordinates
SHIJIAZHUANG, NANJING = (114.4786, 38.0414), (118.7778, 32.0617)
API_KEY = "gazetteer-key"


@pytest.fixture
def gazetteer(tmp_path, loopback, monkeypatch) -> str:
    """The gazetteer tool server (a fresh SQLite database, an API key) on a loopback port, named by the env vars."""
    database = Gazetteer(f"sqlite:///{tmp_path / 'gazetteer.db'}")
    server = loopback(create_app(database, api_key=API_KEY))
    monkeypatch.setenv(geo.GAZETTEER_URL_ENV, server.url)
    monkeypatch.setenv(geo.GAZETTEER_KEY_ENV, API_KEY)
    yield server.url
    database.close()


def prepared(text: str) -> dict:
    """A record after the example's transforms, as the model step sees it."""
    return geo.look_up(geo.read_relation(geo.find_terms({"text": text})))


# Transforms ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "entities", "direction", "between"), [
    ("在北京和天津之间设置一条分界线", [("北京", "place"), ("天津", "place"), ("分界线", "symbol")], None, True),
    ("在石家庄以北设置一个营指挥所", [("石家庄", "place"), ("营指挥所", "symbol")], "north", False),
    ("在南京东侧设置观察所", [("南京", "place"), ("观察所", "symbol")], "east", False),
    ("在西安以南设置检查站", [("西安", "place"), ("检查站", "symbol")], "south", False),
    ("Set up a checkpoint west of Beijing", [("检查站", "symbol"), ("北京", "place")], "west", False),
])
def test_entities_direction_and_between_come_from_the_text_outside_the_place_names(text, entities, direction, between):
    record = geo.read_relation(geo.find_terms({"text": text}))
    assert [(entity["canonical"], entity["type"]) for entity in record["entities"]] == entities
    assert (record["direction"], record["between"]) == (direction, between)


def test_the_lookup_takes_coordinates_and_symbols_from_the_gazetteer(gazetteer):
    record = prepared("在北京和天津之间设置一条分界线")
    assert [(place["name"], place["longitude"], place["latitude"]) for place in record["places"]] == [
        ("北京", *BEIJING), ("天津", *TIANJIN)]
    (symbol,) = record["symbols"]
    assert (symbol["name_en"], symbol["geometry"]) == ("boundary line", "line")
    assert symbol["parameters"]["line_style"] == "dash-dot"
    assert record["missing"] == []


def test_a_sentence_without_a_known_place_or_an_unreachable_gazetteer_names_the_problem(gazetteer, monkeypatch):
    with pytest.raises(ValueError, match="the text names no place of lexicon.tsv"):
        prepared("在这里设置分界线")
    monkeypatch.setenv(geo.GAZETTEER_KEY_ENV, "wrong")
    with pytest.raises(ValueError, match="the gazetteer answered 401"):
        prepared("在北京设置检查站")
    monkeypatch.setenv(geo.GAZETTEER_URL_ENV, "http://127.0.0.1:9")
    with pytest.raises(ConnectionError, match="cannot reach the gazetteer at http://127.0.0.1:9 .*llmkit toolserver"):
        prepared("在北京设置检查站")


# Geometry --------------------------------------------------------------------------------------------------------

def test_the_bisector_crosses_the_middle_at_right_angles_on_the_ground_and_is_as_long_as_the_gap():
    start, end = geo.bisector(BEIJING, TIANJIN)
    middle = geo.centroid([BEIJING, TIANJIN])
    assert geo.centroid([start, end]) == pytest.approx(middle)
    scale = math.cos(math.radians(middle[1]))
    gap = ((TIANJIN[0] - BEIJING[0]) * scale, TIANJIN[1] - BEIJING[1])
    line = ((end[0] - start[0]) * scale, end[1] - start[1])
    assert gap[0] * line[0] + gap[1] * line[1] == pytest.approx(0, abs=1e-12)
    assert math.hypot(*line) == pytest.approx(math.hypot(*gap))


@pytest.mark.parametrize(("direction", "moved"), [
    ("north", (0, 0.005)), ("south", (0, -0.005)), ("east", (0.005, 0)), ("west", (-0.005, 0)), (None, (0, 0)),
])
def test_a_direction_moves_every_position_0_005_degrees_along_its_axis(direction, moved):
    line = {"type": "LineString", "coordinates": [list(BEIJING), list(TIANJIN)]}
    shifted = geo.shift(line, direction)
    for before, after in zip(line["coordinates"], shifted["coordinates"]):
        assert (after[0] - before[0], after[1] - before[1]) == pytest.approx(moved, abs=1e-9)


@pytest.mark.parametrize(("kind", "points", "between", "expected"), [
    ("point", [BEIJING, TIANJIN], False, ["Point", "Point"]),
    ("point", [BEIJING, TIANJIN], True, ["Point"]),
    ("line", [BEIJING, TIANJIN], True, ["LineString"]),
    ("line", [BEIJING, TIANJIN, SHIJIAZHUANG], False, ["LineString"]),
    ("line", [NANJING], False, ["LineString"]),
    ("polygon", [NANJING], False, ["Polygon"]),
    ("polygon", [BEIJING, TIANJIN, SHIJIAZHUANG], True, ["Polygon"]),
])
def test_each_geometry_is_built_for_any_number_of_places(kind, points, between, expected):
    geometries = geo.build(kind, points, between)
    assert [geometry["type"] for geometry in geometries] == expected
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": geometry, "properties": {}} for geometry in geometries]}
    assert geo.check_geojson(collection) == []


def test_areas_are_closed_counter_clockwise_rings():
    (spanning,) = geo.build("polygon", [BEIJING, TIANJIN, SHIJIAZHUANG], True)
    for ring in (geo.circle(NANJING), spanning["coordinates"][0]):
        assert ring[0] == ring[-1]
        area = sum(a[0] * b[1] - b[0] * a[1] for a, b in itertools.pairwise(ring))
        assert area > 0  # RFC 7946: exterior rings counter-clockwise


def collection(geometry: dict | None, properties: object = None) -> dict:
    """A FeatureCollection of one feature."""
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": geometry,
                                                       "properties": {} if properties is None else properties}]}


@pytest.mark.parametrize(("value", "problem"), [
    ({"type": "Feature"}, "not an object with type FeatureCollection"),
    (collection({"type": "Point", "coordinates": [200, 10]}), "out of range"),
    (collection({"type": "Point", "coordinates": ["1", 2]}), "is not a [longitude, latitude] position"),
    (collection({"type": "LineString", "coordinates": [[1, 2]]}), "a line needs two or more positions"),
    (collection({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}), "the last equal to the first"),
    (collection({"type": "Circle", "coordinates": [1, 2]}), "not a geometry"),
    (collection(None, properties=[]), "properties: missing, or neither an object nor null"),
])
def test_the_geojson_check_names_what_is_wrong(value, problem):
    (found,) = geo.check_geojson(value)
    assert problem in found


# Post-processor --------------------------------------------------------------------------------------------------

def test_the_model_picks_among_what_the_text_named_and_garbage_falls_back_to_it(gazetteer):
    record = prepared("在石家庄以北设置一个营指挥所")
    for answer in ('{"symbol": "雷场", "geometry": "polygon", "places": ["上海"], "label": ""}', "not JSON at all"):
        collection = geo.to_geojson(answer, record)
        assert geo.check_geojson(collection) == []
        (feature,) = collection["features"]
        assert feature["geometry"]["type"] == "Point"
        assert feature["geometry"]["coordinates"] == pytest.approx([SHIJIAZHUANG[0], SHIJIAZHUANG[1] + 0.005], abs=1e-9)
        assert feature["properties"]["symbol"] == feature["properties"]["label"] == "营指挥所"
        assert feature["properties"]["places"] == [
            {"name": "石家庄", "name_en": "Shijiazhuang", "longitude": SHIJIAZHUANG[0], "latitude": SHIJIAZHUANG[1]}]


def test_geometry_from_model_draws_the_model_s_choice(gazetteer):
    record = prepared("在北京和天津之间设置一条分界线")
    answer = '{"symbol": "分界线", "geometry": "polygon", "places": ["北京, 天津"], "label": "京津分界线"}'
    assert [f["geometry"]["type"] for f in geo.to_geojson(answer, record)["features"]] == ["LineString"]
    (feature,) = geo.to_geojson(answer, record, geometry_from="model")["features"]
    assert feature["geometry"]["type"] == "Polygon" and feature["properties"]["label"] == "京津分界线"


# Finalize: the run's GeoJSON and map -----------------------------------------------------------------------------

def test_no_map_is_written_before_a_record_is_done(tmp_path):
    (tmp_path / "geo.jsonl").write_text("")
    assert geo.write_map(tmp_path / "geo.jsonl") == [] and sorted(tmp_path.iterdir()) == [tmp_path / "geo.jsonl"]


def test_the_maps_draw_with_a_chinese_font_when_there_is_one(gazetteer, tmp_path, monkeypatch):
    monkeypatch.setattr(geo, "cjk_font", lambda: "DejaVu Sans")  # lacks the glyphs, but takes the same path
    collection = geo.to_geojson("{}", prepared("在郑州、济南和合肥之间划定警戒区"))
    geo.draw_maps([(0, "在郑州、济南和合肥之间划定警戒区", collection)], tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_writes_each_prediction_and_the_finalize_step_the_geojson_and_map_on_every_run(gazetteer, tmp_path):
    config = load_pipeline(GEO / "pipeline.yaml")
    answer = '{"symbol": "分界线", "geometry": "line", "places": ["北京", "天津"], "label": "京津分界线"}'
    model = ScriptedModel(lambda body: answer)
    write_jsonl(tmp_path / "in.jsonl", [{"text": "在北京和天津之间设置一条分界线"}, {"text": "在南京以东设置观察所"}])
    output = tmp_path / "geo.jsonl"
    for limit in (1, 2):  # the second run resumes, and the map covers both runs' records
        summary = run_pipeline(config, tmp_path / "in.jsonl", output, limit=limit,
                               connect=lambda: serve_in_process(model.app(), "scripted"))
        assert summary.failed == 0, summary.first_error
        assert summary.files == [tmp_path / "geo.geojson", tmp_path / "geo.png"]
    merged = json.loads((tmp_path / "geo.geojson").read_text(encoding="utf-8"))
    assert geo.check_geojson(merged) == []
    assert [feature["properties"]["record"] for feature in merged["features"]] == [0, 1]
    assert model.requests[0]["response_format"]["type"] == "json_schema"


# End to end ------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_llmkit_run_turns_the_example_sentences_into_geojson_and_a_map(gazetteer, tmp_path):
    sentences = list(read_jsonl(GEO / "sentences.jsonl"))[:4]
    write_jsonl(tmp_path / "sentences.jsonl", sentences)
    output = tmp_path / "out" / "geo.jsonl"
    command = [str(LLMKIT), "run", str(GEO / "pipeline.yaml"), "--input", str(tmp_path / "sentences.jsonl"),
               "--output", str(output)]
    result = subprocess.run(command, check=False, capture_output=True, encoding="utf-8", timeout=600,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4/4 records" in result.stdout and f"wrote {output.with_suffix('.geojson')}" in result.stdout

    predictions = {line["text"]: line["prediction"] for line in read_jsonl(output)}
    for collection in predictions.values():
        assert geo.check_geojson(collection) == [] and collection["features"]
    (boundary,) = predictions["在北京和天津之间设置一条分界线"]["features"]
    assert boundary["geometry"]["type"] == "LineString"  # the dash-dot symbol between the gazetteer's two cities
    expected = [coordinate for position in geo.bisector(BEIJING, TIANJIN) for coordinate in position]
    got = [coordinate for position in boundary["geometry"]["coordinates"] for coordinate in position]
    assert got == pytest.approx(expected, abs=1e-6)
    assert [place["name"] for place in boundary["properties"]["places"]] == ["北京", "天津"]
    (post,) = predictions["在石家庄以北设置一个营指挥所"]["features"]
    assert post["geometry"]["coordinates"] == pytest.approx([SHIJIAZHUANG[0], SHIJIAZHUANG[1] + 0.005], abs=1e-9)
    (observation,) = predictions["在南京以东设置观察所"]["features"]
    assert observation["geometry"]["coordinates"] == pytest.approx([NANJING[0] + 0.005, NANJING[1]], abs=1e-9)

    traces = {trace["_index"]: trace for trace in read_jsonl(tmp_path / "out" / "geo.trace.jsonl")}
    first = traces[0]["transformed"]
    assert [entity["canonical"] for entity in first["entities"]] == ["北京", "天津", "分界线"]
    assert [(place["name"], place["longitude"], place["latitude"]) for place in first["places"]] == [
        ("北京", *BEIJING), ("天津", *TIANJIN)]
    assert all(json.loads(trace["raw_output"])["symbol"] for trace in traces.values())  # constrained: always parses

    merged = json.loads(output.with_suffix(".geojson").read_text(encoding="utf-8"))
    assert geo.check_geojson(merged) == [] and len(merged["features"]) == 4
    png = output.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
