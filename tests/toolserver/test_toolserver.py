"""The gazetteer tool server: every status of every route, coordinate bounds, aliases and Chinese names, the shipped
data, persistence across restarts, API keys, and `llmkit toolserver` as a user runs it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from llmkit.errors import LLMKitError
from llmkit.toolserver.app import create_app
from llmkit.toolserver.gazetteer import Gazetteer

API_KEY = "gazetteer-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CAMP = {"name": "一号营地", "aliases": ["Camp One"], "longitude": 116.5, "latitude": 40.1, "altitude": 45.0}
PROVINCIAL_CAPITALS = (
    "北京 天津 上海 重庆 石家庄 太原 呼和浩特 沈阳 长春 哈尔滨 南京 杭州 合肥 福州 南昌 济南 郑州 "
    "武汉 长沙 广州 南宁 海口 成都 贵阳 昆明 拉萨 西安 兰州 西宁 银川 乌鲁木齐 台北 香港 澳门"
).split()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gazetteer.db'}"


@pytest.fixture
def client(db_url: str):
    gazetteer = Gazetteer(db_url)
    with TestClient(create_app(gazetteer, api_key=API_KEY), headers=AUTH) as client:
        yield client
    gazetteer.close()


def error(response: httpx.Response, status: int) -> dict:
    """The OpenAI-style error body of a response that must have `status`."""
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_new_database_holds_the_shipped_places_and_symbols(client):
    assert client.get("/health", headers={}).json() == {"status": "ok", "places": 61, "symbols": 17}
    found = client.get("/places", params={"names": ",".join(PROVINCIAL_CAPITALS)}).json()
    assert [place["name"] for place in found["places"]] == PROVINCIAL_CAPITALS and found["missing"] == []
    beijing = found["places"][0]
    assert beijing == {
        "name": "北京", "aliases": ["Beijing", "北京市", "Peking"], "longitude": 116.3972, "latitude": 39.9075, "altitude": 49.0
    }


def test_places_by_name_or_alias_in_any_case_each_once_with_the_missing_names(client):
    response = client.get("/places", params={"names": "beijing, TIANJIN，Atlantis,北京,Xi'an"})
    assert response.status_code == 200
    body = response.json()
    assert [place["name"] for place in body["places"]] == ["北京", "天津", "西安"]
    assert body["missing"] == ["Atlantis"]


def test_places_errors(client):
    assert "no place is named Atlantis, 亚特兰蒂斯" in error(client.get("/places?names=Atlantis,亚特兰蒂斯"), 404)["message"]
    assert error(client.get("/places"), 400)["message"] == "invalid request: query.names: required"
    assert error(client.get("/places", params={"names": " , ，"}), 400)["message"] == (
        "names: give one or more names separated by commas"
    )


def test_symbols_by_chinese_or_english_name(client):
    body = client.get("/symbols", params={"names": "分界线,Command Post,营指挥所,集结地域,旗帜"}).json()
    assert [(s["name_zh"], s["name_en"], s["geometry"]) for s in body["symbols"]] == [
        ("分界线", "boundary line", "line"),
        ("指挥所", "command post", "point"),
        ("营指挥所", "battalion command post", "point"),
        ("集结地域", "assembly area", "polygon"),
    ]
    assert body["missing"] == ["旗帜"]
    assert body["symbols"][0]["parameters"]["line_style"] == "dash-dot"
    assert error(client.get("/symbols?names=旗帜"), 404)["type"] == "not_found_error"
    assert error(client.get("/symbols?names="), 400)["param"] == "names"


def test_add_a_place(client):
    response = client.post("/places", json={**CAMP, "aliases": ["Camp One", "camp one", "一号营地"]})
    assert response.status_code == 201
    assert response.json() == CAMP  # aliases repeating the name or each other are dropped
    assert client.get("/places?names=CAMP ONE").json()["places"] == [CAMP]
    assert client.post("/places", json={"name": "二号营地", "longitude": 0, "latitude": 0}).json()["altitude"] is None


@pytest.mark.parametrize(("longitude", "latitude"), [(-180, -90), (180, 90), (-180.0, 90.0), (0, 0)])
def test_coordinates_on_the_bounds_are_accepted(client, longitude, latitude):
    place = {"name": f"点{longitude},{latitude}", "longitude": longitude, "latitude": latitude}
    assert client.post("/places", json=place).status_code == 201


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"longitude": 180.0001}, "longitude: Input should be less than or equal to 180"),
        ({"longitude": -180.5}, "longitude: Input should be greater than or equal to -180"),
        ({"latitude": 90.01}, "latitude: Input should be less than or equal to 90"),
        ({"latitude": -91}, "latitude: Input should be greater than or equal to -90"),
        ({"longitude": "east"}, "longitude: Input should be a valid number"),
        ({"altitude": "high"}, "altitude: Input should be a valid number"),
        ({"name": "  "}, "name: String should have at least 1 character"),
        ({"aliases": [""]}, "aliases.0: String should have at least 1 character"),
        ({"name": None}, "name: Input should be a valid string"),
        ({"lat": 40}, "unrecognized request argument supplied: lat"),
    ],
)
def test_invalid_places_are_400_naming_the_field(client, change, message):
    for request in (client.post, lambda url, json: client.put(f"{url}/天津", json=json)):
        body = error(request("/places", json={**CAMP, **change}), 400)
        assert message in body["message"] and body["type"] == "invalid_request_error"


@pytest.mark.parametrize("missing", ["name", "longitude", "latitude"])
def test_a_place_without_a_required_field_is_400(client, missing):
    place = {key: value for key, value in CAMP.items() if key != missing}
    assert error(client.post("/places", json=place), 400)["message"] == f"invalid request: {missing}: required"


def test_a_body_that_is_not_json_is_400(client):
    response = client.post("/places", content=b"{name: 1}", headers={**AUTH, "Content-Type": "application/json"})
    assert "not valid JSON" in error(response, 400)["message"]


@pytest.mark.parametrize(
    ("place", "taken"),
    [
        ({**CAMP, "name": "北京"}, "'北京' is already a name of the place '北京'"),
        ({**CAMP, "aliases": ["beijing"]}, "'Beijing' is already a name of the place '北京'"),
        ({**CAMP, "aliases": ["Camp 1", "PEKING"]}, "'Peking' is already a name of the place '北京'"),
    ],
)
def test_a_name_or_alias_already_present_is_409(client, place, taken):
    assert error(client.post("/places", json=place), 409)["message"] == taken
    assert error(client.get("/places?names=Camp One"), 404)  # nothing of the refused place was stored


def test_update_a_place(client):
    tianjin = {"name": "天津", "aliases": ["Tianjin", "Tientsin"], "longitude": 117.2, "latitude": 39.13, "altitude": 5}
    response = client.put("/places/tianjin", json=tianjin)  # found by alias, any case; keeps its own names
    assert response.status_code == 200 and response.json() == {**tianjin, "altitude": 5.0}
    assert client.get("/places?names=Tientsin").json()["places"] == [{**tianjin, "altitude": 5.0}]
    assert client.get("/places?names=天津,天津市").json()["missing"] == ["天津市"]  # names left out are gone
    renamed = client.put("/places/天津", json={**tianjin, "name": "津"}).json()
    assert renamed["name"] == "津" and client.get("/places?names=津").json()["places"][0]["longitude"] == 117.2


def test_update_errors(client):
    assert "no place is named Atlantis" in error(client.put("/places/Atlantis", json=CAMP), 404)["message"]
    taken = client.put("/places/天津", json={**CAMP, "aliases": ["Shanghai"]})
    assert error(taken, 409)["message"] == "'Shanghai' is already a name of the place '上海'"
    assert client.get("/places?names=天津").json()["places"][0]["longitude"] == 117.1767  # unchanged


def test_ids_are_fresh_uuid4s(client):
    ids = [client.post("/ids").json()["id"] for _ in range(3)]
    assert all(uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value for value in ids)
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("method", "url"),
    [("get", "/places?names=北京"), ("post", "/places"), ("put", "/places/北京"), ("get", "/symbols?names=道路"),
     ("post", "/ids")],
)
def test_every_route_but_health_needs_the_api_key(client, method, url):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        body = error(client.request(method, url, json=CAMP, headers=headers), 401)
        assert body["type"] == "authentication_error" and body["code"] == "invalid_api_key"
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200


def test_without_an_api_key_reads_are_open_and_writes_are_refused(db_url):
    gazetteer = Gazetteer(db_url)
    with TestClient(create_app(gazetteer)) as client:
        assert client.get("/places?names=Tokyo").json()["places"][0]["name"] == "东京"
        assert client.get("/symbols?names=道路").status_code == 200 and client.post("/ids").status_code == 200
        for response in (client.post("/places", json=CAMP), client.put("/places/北京", json={**CAMP, "name": "北京"}),
                         client.post("/places", json={"name": 1})):  # refused before the body is checked
            body = error(response, 403)
            assert body["type"] == "permission_error" and "--api-key" in body["message"]
        assert client.get("/health").json()["places"] == 61  # nothing was written
        assert client.get("/places?names=北京").json()["places"][0]["longitude"] == 116.3972
    gazetteer.close()


def test_a_body_over_the_limit_is_413(db_url):
    gazetteer = Gazetteer(db_url)
    with TestClient(create_app(gazetteer, api_key=API_KEY, max_body_bytes=1000), headers=AUTH) as client:
        body = error(client.post("/places", json={**CAMP, "aliases": ["x" * 1000]}), 413)
        assert body["message"] == "the request body is larger than 1000 bytes"
        assert client.post("/places", json=CAMP).status_code == 201
    gazetteer.close()


def test_places_persist_across_restarts_and_seeding_happens_once(db_url):
    first = Gazetteer(db_url)
    with TestClient(create_app(first, api_key=API_KEY), headers=AUTH) as client:
        assert client.post("/places", json=CAMP).status_code == 201
        assert client.put("/places/上海", json={"name": "上海", "longitude": 121.47, "latitude": 31.23}).status_code == 200
    first.close()
    second = Gazetteer(db_url)
    with TestClient(create_app(second)) as client:
        assert client.get("/places?names=Camp One").json()["places"] == [CAMP]
        assert client.get("/places?names=上海").json()["places"][0]["aliases"] == []
        assert client.get("/health").json() == {"status": "ok", "places": 62, "symbols": 17}
    second.close()


@pytest.mark.parametrize(("url", "message"), [("nonsense", "not a usable database URL"),
                                              ("sqlite:////nonexistent/folder/g.db", "cannot open the database")])
def test_a_bad_database_url_is_one_clear_error(url, message):
    with pytest.raises(LLMKitError, match=message):
        Gazetteer(url)


LLMKIT = Path(sys.executable).parent / "llmkit"


@pytest.mark.slow
def test_llmkit_toolserver_serves_a_sqlite_file(tmp_path, cli_server):
    database = tmp_path / "places.db"
    url, log_path = cli_server("toolserver", "--db", f"sqlite:///{database}",
                               env={"LLMKIT_TOOLSERVER_API_KEY": API_KEY}, timeout=120)
    assert httpx.get(f"{url}/places", params={"names": "北京"}).status_code == 401
    found = httpx.get(f"{url}/places", params={"names": "北京,Tianjin"}, headers=AUTH).json()
    assert [(p["name"], p["latitude"], p["longitude"]) for p in found["places"]] == [
        ("北京", 39.9075, 116.3972), ("天津", 39.1422, 117.1767)
    ]
    assert httpx.post(f"{url}/places", json=CAMP, headers=AUTH).status_code == 201
    log = log_path.read_text()
    assert f"gazetteer at {url} (API key required)" in log and "61 places · 17 map symbols" in log
    assert database.is_file()


@pytest.mark.slow
def test_llmkit_toolserver_without_a_key_says_it_is_read_only(tmp_path, cli_server):
    url, log_path = cli_server("toolserver", "--db", f"sqlite:///{tmp_path / 'places.db'}",
                               env={"LLMKIT_TOOLSERVER_API_KEY": ""}, timeout=120)
    assert httpx.get(f"{url}/places", params={"names": "北京"}).status_code == 200
    assert httpx.post(f"{url}/places", json=CAMP).status_code == 403
    assert "read-only: start with --api-key to allow writes" in log_path.read_text()


def test_llmkit_toolserver_with_a_bad_database_url_fails_with_one_line():
    result = subprocess.run([str(LLMKIT), "toolserver", "--db", "nonsense"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "not a usable database URL" in result.stderr and "Traceback" not in result.stderr
