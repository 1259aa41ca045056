"""The geo example's own steps (named from pipeline.yaml as `geo.py:function`): sentence → entities → gazetteer
coordinates → the model's constrained choice → GeoJSON features → a map preview.

Coordinates only ever come from the gazetteer tool server; the model picks the symbol, the places, the
geometry and a label; the post-processor builds and checks the GeoJSON, so a weak model's answer can make
the map wrong but never invalid.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import httpx
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from llmkit.jsonl import read_jsonl
from llmkit.pipeline.postprocess import json_object
from llmkit.segment import find_entities

GAZETTEER_URL_ENV = "LLMKIT_GAZETTEER_URL"  # where `llmkit toolserver` listens
GAZETTEER_KEY_ENV = "LLMKIT_TOOLSERVER_API_KEY"  # the same variable `llmkit toolserver --api-key` reads
DEFAULT_GAZETTEER_URL = "http://127.0.0.1:8100"

GEOMETRIES = ("point", "line", "polygon")
OFFSET_DEG = 0.005  # how far "以北 / north of" moves a feature along its axis
RADIUS_DEG = 0.01  # an area around one place: a circle of about 1.1 km
AXES = {"north": (0.0, 1.0), "south": (0.0, -1.0), "east": (1.0, 0.0), "west": (-1.0, 0.0)}
_CHINESE_AXES = {"北": "north", "南": "south", "东": "east", "西": "west"}
_DIRECTION = re.compile(
    r"以([东南西北])|([东南西北])(?:侧|面|边|部|方)|\b(north|south|east|west)\s+of\b", re.IGNORECASE
)
_BETWEEN = re.compile(r"之间|\bbetween\b", re.IGNORECASE)

Position = tuple[float, float]  # (longitude, latitude), GeoJSON's order
Geometry = dict[str, Any]


# Input transforms ------------------------------------------------------------------------------------------------

def find_terms(record: dict, *, field: str = "text", lexicon: str = "lexicon.tsv") -> dict:
    """`llmkit.segment.find_entities` with the lexicon beside this file, so the pipeline runs from any folder."""
    return find_entities(record, lexicon=Path(__file__).with_name(lexicon), field=field, into="entities")


def read_relation(record: dict, *, field: str = "text") -> dict:
    """The record plus `direction` (north/south/east/west or None: 以北, 东侧, "west of") and `between` (之间),
    read from the text outside the entities, so the 北 of 北京 or the 南 of 南京 is never taken for a direction."""
    text = _outside_entities(record[field], record["entities"])
    found = _DIRECTION.search(text)
    direction = None if found is None else _CHINESE_AXES.get(found[1] or found[2]) or found[3].lower()
    return {**record, "direction": direction, "between": bool(_BETWEEN.search(text))}


def look_up(record: dict, *, timeout: float = 10.0) -> dict:
    """The record plus `places` and `symbols`: the gazetteer's entries for the places and map symbols the text
    names (in the order written), and `missing`, the names it does not know."""
    places = _gazetteer("places", _names(record["entities"], "place"), timeout)
    symbols = _gazetteer("symbols", _names(record["entities"], "symbol"), timeout)
    return {**record, "places": places["places"], "symbols": symbols["symbols"],
            "missing": places["missing"] + symbols["missing"]}


def _outside_entities(text: str, entities: list[dict]) -> str:
    for entity in entities:
        text = text[: entity["start"]] + " " * (entity["end"] - entity["start"]) + text[entity["end"]:]
    return text


def _names(entities: list[dict], kind: str) -> list[str]:
    """The distinct canonical names of the entities of one type; an error when the text names none."""
    names = list(dict.fromkeys(entity["canonical"] for entity in entities if entity["type"] == kind))
    if not names:
        raise ValueError(f"the text names no {kind} of lexicon.tsv")
    return names


def _gazetteer(route: str, names: list[str], timeout: float) -> dict:
    """`GET /places` or `/symbols` of the gazetteer tool server (URL and key from the environment)."""
    url = os.environ.get(GAZETTEER_URL_ENV, DEFAULT_GAZETTEER_URL).rstrip("/")
    key = os.environ.get(GAZETTEER_KEY_ENV)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        reply = httpx.get(f"{url}/{route}", params={"names": ",".join(names)}, headers=headers, timeout=timeout)
    except httpx.TransportError as error:
        raise ConnectionError(f"cannot reach the gazetteer at {url} ({error}); start it with `llmkit toolserver "
                              f"--port 8100` or set {GAZETTEER_URL_ENV}") from None
    if reply.status_code != 200:
        message = reply.json().get("error", {}).get("message", reply.text)
        raise ValueError(f"the gazetteer answered {reply.status_code} to {route} {','.join(names)}: {message}")
    return reply.json()


# Post-processor --------------------------------------------------------------------------------------------------

def to_geojson(text: str, record: dict, *, geometry_from: Literal["model", "symbol"] = "symbol") -> dict:
    """A GeoJSON FeatureCollection from the model's JSON answer and the looked-up places and symbols.

    The answer's symbol and places count only when the text named them (else all the text named is used);
    `geometry_from: symbol` draws the symbol's own geometry whatever the model chose."""
    answer = json_object(text, record) or {}
    symbol = _chosen(answer.get("symbol"), record["symbols"], lambda item: [item["name_zh"], item["name_en"]])[0]
    places = _chosen(answer.get("places"), record["places"], lambda item: [item["name"], *item["aliases"]])
    chosen = answer.get("geometry") if geometry_from == "model" else None
    kind = chosen if chosen in GEOMETRIES else symbol["geometry"]
    points = [(place["longitude"], place["latitude"]) for place in places]
    geometries = [shift(geometry, record["direction"]) for geometry in build(kind, points, record["between"])]
    label = answer.get("label")
    properties = {
        "symbol": symbol["name_zh"], "symbol_en": symbol["name_en"], "category": symbol["category"],
        "label": label.strip() if isinstance(label, str) and label.strip() else symbol["name_zh"],
        "places": [_place_summary(place) for place in places], "direction": record["direction"],
        "style": symbol["parameters"],
    }
    collection = {"type": "FeatureCollection",
                  "features": [{"type": "Feature", "geometry": geometry, "properties": properties}
                               for geometry in geometries]}
    problems = check_geojson(collection)
    if problems:
        raise ValueError(f"built invalid GeoJSON: {'; '.join(problems)}")
    return collection


def _chosen(answer: Any, known: list[dict], names: Callable[[dict], list[str]]) -> list[dict]:
    """The known entries the answer names (by any of their names), each once; all of them when it names none."""
    given = answer if isinstance(answer, list) else [answer]
    wanted = {name.strip().casefold() for text in given for name in re.split("[,，、]", str(text))}
    chosen = [item for item in known if wanted & {name.casefold() for name in names(item)}]
    return chosen or known


def _place_summary(place: dict) -> dict:
    """Where a feature's coordinates came from: the gazetteer's place, with an English name for maps."""
    english = next((alias for alias in place["aliases"] if alias.isascii()), place["name"])
    return {"name": place["name"], "name_en": english, "longitude": place["longitude"], "latitude": place["latitude"]}


# Geometry (longitude/latitude degrees; distances measured with longitude scaled by cos(latitude)) ---------------

def build(kind: str, points: list[Position], between: bool) -> list[Geometry]:
    """The geometries of one symbol over its places: points at each place (or their middle when the symbol is
    between them), the perpendicular bisector between two places or a line through several, an area around
    each place (or their middle) or spanning three or more."""
    middle = [centroid(points)] if between and len(points) > 1 else points
    if kind == "point":
        return [_geometry("Point", position) for position in middle]
    if kind == "line":
        if between and len(points) == 2:
            return [_geometry("LineString", bisector(*points))]
        if len(points) > 1:
            return [_geometry("LineString", points)]
        return [_geometry("LineString", across(points[0]))]
    if len(points) > 2:
        return [_geometry("Polygon", [_ring(sorted(points, key=_angle_around(centroid(points))))])]
    return [_geometry("Polygon", [circle(position)]) for position in middle]


def centroid(points: list[Position]) -> Position:
    """The mean position (fine at the scale of a map sheet, far from the antimeridian)."""
    return sum(point[0] for point in points) / len(points), sum(point[1] for point in points) / len(points)


def bisector(a: Position, b: Position) -> list[Position]:
    """The segment through the middle of A–B at right angles to it on the ground, as long as A–B: the boundary
    line that splits the ground between A and B."""
    middle = centroid([a, b])
    scale = math.cos(math.radians(middle[1]))
    east, north = (b[0] - a[0]) * scale, b[1] - a[1]  # A→B in a local equirectangular frame
    half = (north / 2 / scale, -east / 2)  # A→B turned a quarter, halved, back in degrees
    return [(middle[0] - half[0], middle[1] - half[1]), (middle[0] + half[0], middle[1] + half[1])]


def across(point: Position, half_length: float = RADIUS_DEG) -> list[Position]:
    """A short east–west segment centred on a point: a line symbol at a single place."""
    return [(point[0] - half_length, point[1]), (point[0] + half_length, point[1])]


def circle(center: Position, radius: float = RADIUS_DEG, sides: int = 16) -> list[Position]:
    """A closed counter-clockwise ring round on the ground, `radius` degrees of latitude from the centre."""
    scale = math.cos(math.radians(center[1]))
    ring = [(center[0] + radius * math.cos(turn) / scale, center[1] + radius * math.sin(turn))
            for turn in (2 * math.pi * step / sides for step in range(sides))]
    return _ring(ring)


def shift(geometry: Geometry, direction: str | None, distance: float = OFFSET_DEG) -> Geometry:
    """The geometry moved `distance` degrees along the direction's axis (latitude for north/south, longitude
    for east/west); unchanged without a direction."""
    if direction is None:
        return geometry
    step = AXES[direction]
    return {**geometry, "coordinates": _map_positions(
        geometry["coordinates"], lambda x, y: (round(x + step[0] * distance, 6), round(y + step[1] * distance, 6))
    )}


def _geometry(kind: str, coordinates: Any) -> Geometry:
    """A GeoJSON geometry with positions rounded to 6 decimals (about 0.1 m, as RFC 7946 recommends)."""
    return {"type": kind, "coordinates": _map_positions(coordinates, lambda x, y: (round(x, 6), round(y, 6)))}


def _map_positions(coordinates: Any, move: Callable[[float, float], Position]) -> Any:
    """Nested coordinates with `move(longitude, latitude)` applied to each position, as JSON lists."""
    if isinstance(coordinates[0], (int, float)):
        return list(move(*coordinates))
    return [_map_positions(part, move) for part in coordinates]


def _ring(points: list[Position]) -> list[Position]:
    return [*points, points[0]]


def _angle_around(center: Position) -> Callable[[Position], float]:
    return lambda point: math.atan2(point[1] - center[1], point[0] - center[0])


# GeoJSON check (RFC 7946, the geometry types this example writes and their Multi forms) -------------------------

def check_geojson(value: Any) -> list[str]:
    """What keeps `value` from being a valid GeoJSON FeatureCollection; an empty list when it is one."""
    if not isinstance(value, dict) or value.get("type") != "FeatureCollection":
        return ["not an object with type FeatureCollection"]
    if not isinstance(value.get("features"), list):
        return ["features is not a list"]
    problems = []
    for number, feature in enumerate(value["features"]):
        where = f"features[{number}]"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            problems.append(f"{where}: not an object with type Feature")
            continue
        if not isinstance(feature.get("properties", ...), (dict, type(None))):
            problems.append(f"{where}.properties: missing, or neither an object nor null")
        geometry = feature.get("geometry", ...)
        if geometry is not None:
            problems += _geometry_problems(geometry, f"{where}.geometry")
    return problems


_DEPTHS = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}


def _geometry_problems(geometry: Any, where: str) -> list[str]:
    """A geometry's type, its coordinates' nesting and ranges, lines of 2+ positions, closed rings of 4+."""
    if not isinstance(geometry, dict) or geometry.get("type") not in _DEPTHS:
        return [f"{where}: not a geometry ({', '.join(_DEPTHS)}) nor null"]
    kind = geometry["type"]
    problems = _coordinate_problems(geometry.get("coordinates"), _DEPTHS[kind], f"{where}.coordinates")
    if problems:
        return problems
    coordinates = geometry["coordinates"]
    lines = [coordinates] if kind == "LineString" else coordinates if kind == "MultiLineString" else []
    polygons = [coordinates] if kind == "Polygon" else coordinates if kind == "MultiPolygon" else []
    rings = [ring for polygon in polygons for ring in polygon]
    problems += [f"{where}: a line needs two or more positions" for line in lines if len(line) < 2]
    problems += [f"{where}: a ring needs four or more positions, the last equal to the first"
                 for ring in rings if len(ring) < 4 or ring[0] != ring[-1]]
    return problems


def _coordinate_problems(value: Any, depth: int, where: str) -> list[str]:
    """Positions nested `depth` lists deep, each [longitude, latitude(, altitude)] within range."""
    if depth:
        if not isinstance(value, list) or not value:
            return [f"{where}: not a non-empty list"]
        return [problem for part in value for problem in _coordinate_problems(part, depth - 1, where)]
    numbers = isinstance(value, list) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in value)
    if not numbers or len(value) not in (2, 3):
        return [f"{where}: {value!r} is not a [longitude, latitude] position"]
    if not (-180 <= value[0] <= 180 and -90 <= value[1] <= 90):
        return [f"{where}: {value!r} is out of range"]
    return []


# Finalize: the run's GeoJSON file and map preview ----------------------------------------------------------------

def write_map(output: Path, *, field: str = "prediction", title_field: str = "text", max_maps: int = 12) -> list[Path]:
    """Beside the run's output, `OUTPUT.geojson` (every record's features, each tagged with its `record` index)
    and `OUTPUT.png`, a map per record for the first `max_maps` records; nothing while no record is done."""
    if max_maps < 1:
        raise ValueError(f"max_maps: draw at least 1 map (got {max_maps})")
    records = sorted((line for line in read_jsonl(output) if isinstance(line.get(field), dict)),
                     key=lambda line: line["_index"])
    if not records:
        return []
    features = [{**feature, "properties": {**feature["properties"], "record": line["_index"]}}
                for line in records for feature in line[field]["features"]]
    geojson, png = output.with_suffix(".geojson"), output.with_suffix(".png")
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False, indent=1),
                       encoding="utf-8")
    draw_maps([(line["_index"], line.get(title_field, ""), line[field]) for line in records[:max_maps]], png)
    return [geojson, png]


_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
              "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "AR PL UMing CN")
_LINE_STYLES = {"solid": "-", "dashed": "--", "dash-dot": "-.", "zigzag": ":"}
_MARKERS = {"flag": "^", "triangle": "^", "checkpoint": "s", "cross": "P", "h-circle": "H", "crossing": "X"}


def cjk_font() -> str | None:
    """An installed font family with Chinese characters, or None (the maps then use English names)."""
    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def draw_maps(maps: list[tuple[int, str, dict]], path: Path) -> None:
    """One equirectangular panel per (record index, title, FeatureCollection), axes in degrees, no tiles (it works
    offline); without a Chinese font the titles are the indices and the labels English."""
    font = cjk_font()
    columns = min(3, len(maps))
    rows = math.ceil(len(maps) / columns)
    figure = Figure(figsize=(4.5 * columns, 4 * rows), layout="constrained")
    panels = list(figure.subplots(rows, columns, squeeze=False).flat)
    for panel, (index, title, collection) in zip(panels, maps):
        _draw_panel(panel, collection, title if font else f"record {index}", font)
    for panel in panels[len(maps):]:
        panel.set_axis_off()
    figure.savefig(path, dpi=100)


def _draw_panel(axes: Axes, collection: dict, title: str, font: str | None) -> None:
    names = {"fontfamily": [font, "DejaVu Sans"]} if font else {}
    for feature in collection["features"]:
        properties, geometry = feature["properties"], feature["geometry"]
        style = properties.get("style", {})
        color = style.get("color", "#0000FF")
        positions = _positions(geometry["coordinates"])
        if geometry["type"] == "Point":
            axes.plot(*zip(*positions), marker=_MARKERS.get(style.get("icon"), "o"), color=color, markersize=9)
        elif geometry["type"] == "LineString":
            axes.plot(*zip(*positions), linestyle=_LINE_STYLES.get(style.get("line_style"), "-"), color=color,
                      linewidth=style.get("width", 2))
        else:
            fill = style.get("fill", "none")
            face = to_rgba(fill, style.get("fill_opacity", 1.0)) if fill.startswith("#") else "none"
            axes.fill(*zip(*positions), facecolor=face, edgecolor=color, hatch="//" if fill == "hatched" else None,
                      linestyle=_LINE_STYLES.get(style.get("line_style"), "-"))
        label = properties["label"] if font else properties["symbol_en"]
        axes.annotate(label, centroid(positions), xytext=(6, 6), textcoords="offset points", color=color, **names)
        for place in properties["places"]:
            axes.plot(place["longitude"], place["latitude"], "o", color="0.4", markersize=4)
            axes.annotate(place["name"] if font else place["name_en"], (place["longitude"], place["latitude"]),
                          xytext=(4, -10), textcoords="offset points", color="0.3", fontsize=8, **names)
    _frame(axes, collection)
    axes.set_title(title, fontsize=9, **names)


def _frame(axes: Axes, collection: dict) -> None:
    """Degrees on both axes, a margin round everything drawn, and 1° of longitude drawn cos(latitude) as wide."""
    positions = [position for feature in collection["features"]
                 for position in _positions(feature["geometry"]["coordinates"])]
    positions += [(place["longitude"], place["latitude"])
                  for feature in collection["features"] for place in feature["properties"]["places"]]
    xs, ys = zip(*positions)
    margin = max(0.02, 0.15 * max(max(xs) - min(xs), max(ys) - min(ys)))
    axes.set_xlim(min(xs) - margin, max(xs) + margin)
    axes.set_ylim(min(ys) - margin, max(ys) + margin)
    axes.set_aspect(1 / math.cos(math.radians(sum(ys) / len(ys))))
    axes.ticklabel_format(useOffset=False)
    axes.locator_params(nbins=5)
    axes.set_xlabel("longitude (°E)")
    axes.set_ylabel("latitude (°N)")
    axes.grid(linewidth=0.3)


def _positions(coordinates: Any) -> list[Position]:
    """Every position in nested coordinates, flattened."""
    if isinstance(coordinates[0], (int, float)):
        return [tuple(coordinates[:2])]
    return [position for part in coordinates for position in _positions(part)]
