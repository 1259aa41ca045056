import huggingface_hub.constants
import pytest

from llmkit.errors import ModelNotFoundError, OfflineError
from llmkit.hub import download, gguf_file, resolve

from fake_hub import FakeHub

GGUF_REPO = {  # a GGUF repository as they come: one file per quantisation, one of them split in two
    "README.md": b"# tiny",
    "tiny-Q2_K.gguf": b"q2",
    "tiny-Q4_K_M.gguf": b"q4",
    "tiny-Q8_0.gguf": b"q8",
    "F16/tiny-F16-00001-of-00002.gguf": b"f16 a",
    "F16/tiny-F16-00002-of-00002.gguf": b"f16 b",
}


@pytest.fixture
def fake_hub(tiny_repo):
    hub = FakeHub({
        **FakeHub.from_folder("acme/tiny-llama", tiny_repo).repos,
        "acme/tiny-gguf": GGUF_REPO,
        "datasets/acme/questions": {"train.jsonl": b'{"q": 1}\n', "test.jsonl": b'{"q": 2}\n'},
    })
    yield hub
    hub.close()


def fetched(hub: FakeHub) -> list[str]:
    """The files the fake hub sent, in order."""
    return [path.split("/resolve/", 1)[1].split("/", 1)[1] for method, path in hub.requests
            if method == "GET" and "/resolve/" in path]


def test_download_through_hf_endpoint_lands_in_the_hugging_face_cache(online, fake_hub, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    path = resolve("acme/tiny-llama")
    assert path.is_relative_to(online.path / "models--acme--tiny-llama" / "snapshots")
    assert sorted(p.name for p in path.iterdir()) == sorted(fake_hub.repos["acme/tiny-llama"])
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.num_hidden_layers == 2

    # Cached now: a second resolve while offline finds the snapshot without the network.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    requests_before = len(fake_hub.requests)
    assert resolve("acme/tiny-llama") == path
    assert len(fake_hub.requests) == requests_before


def test_a_model_cached_by_another_tool_is_found_offline(hf_cache, tiny_repo):
    """What transformers or `hf download` left in HF_HUB_CACHE loads as `-m org/name` with HF_HUB_OFFLINE=1."""
    from llmkit.models import load

    assert huggingface_hub.constants.HF_HUB_OFFLINE
    snapshot = hf_cache.add("acme/cached", {p.name: p for p in tiny_repo.iterdir()})
    assert resolve("acme/cached") == snapshot
    loaded = load("acme/cached", dtype="float32", device="cpu")
    assert loaded.model.config.num_hidden_layers == 2


def test_a_repository_neither_cached_nor_reachable_is_an_offline_error(hf_cache):
    with pytest.raises(OfflineError, match="acme/absent.*HF_HUB_OFFLINE"):
        resolve("acme/absent")


def test_gguf_repository_gives_only_the_default_quantisation(online, fake_hub):
    path = download("acme/tiny-gguf", endpoint=fake_hub.url)
    assert fetched(fake_hub) == ["tiny-Q4_K_M.gguf"]
    assert sorted(p.name for p in path.iterdir()) == ["tiny-Q4_K_M.gguf"]


def test_quant_tag_fetches_that_quantisation_and_returns_its_file(online, fake_hub):
    path = download("acme/tiny-gguf:q8_0", endpoint=fake_hub.url)
    assert fetched(fake_hub) == ["tiny-Q8_0.gguf"]
    assert path.name == "tiny-Q8_0.gguf" and path.read_bytes() == b"q8"


def test_split_quantisation_gives_its_first_part_to_llama_cpp(online, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    assert gguf_file("acme/tiny-gguf:F16").name == "tiny-F16-00001-of-00002.gguf"
    assert sorted(fetched(fake_hub)) == sorted(name for name in GGUF_REPO if name.startswith("F16/"))
    with pytest.raises(ModelNotFoundError, match="2 files.*llamacpp"):
        resolve("acme/tiny-gguf:F16")


def test_include_exclude_and_file_names_as_hf_download_takes_them(online, fake_hub):
    download("acme/tiny-gguf", include=["*Q2_K*", "*.md"], exclude=["*.md"], endpoint=fake_hub.url)
    assert fetched(fake_hub) == ["tiny-Q2_K.gguf"]
    readme = download("acme/tiny-gguf", filenames=["README.md"], endpoint=fake_hub.url)
    assert readme.name == "README.md" and readme.read_bytes() == b"# tiny"
    with pytest.raises(ModelNotFoundError, match="no file readme.md"):
        download("acme/tiny-gguf", filenames=["readme.md"], endpoint=fake_hub.url)


def test_token_and_dataset_repositories_reach_the_hub(online, fake_hub):
    path = download("acme/questions", repo_type="dataset", token="hf_test", endpoint=fake_hub.url)
    assert path.is_relative_to(online.path / "datasets--acme--questions")
    assert sorted(p.name for p in path.iterdir()) == ["test.jsonl", "train.jsonl"]
    assert set(fake_hub.tokens) == {"Bearer hf_test"}


def test_download_into_local_dir_with_endpoint_argument(online, fake_hub, tmp_path):
    target = tmp_path / "out"
    path = resolve("acme/tiny-llama", endpoint=fake_hub.url, local_dir=target)
    assert path == target.resolve()
    assert (target / "config.json").is_file()


def test_unknown_repo_and_unknown_quant_are_model_not_found(online, fake_hub):
    with pytest.raises(ModelNotFoundError, match="acme/missing"):
        resolve("acme/missing", endpoint=fake_hub.url)
    with pytest.raises(ModelNotFoundError, match="no Q5_K_M GGUF file: it has F16, Q2_K, Q4_K_M, Q8_0"):
        download("acme/tiny-gguf:Q5_K_M", endpoint=fake_hub.url)


def test_download_bars_survive_quiet_model_loading(online, fake_hub, capfd):
    """The CLI silences transformers' loading bars; huggingface_hub's download bars must still show."""
    import huggingface_hub.utils
    import transformers

    from llmkit.cli.model_loading import quiet_transformers

    loading_bars = transformers.utils.logging.is_progress_bar_enabled()
    quiet_transformers()
    try:
        download("acme/tiny-gguf:Q8_0", endpoint=fake_hub.url)
    finally:  # leave both switches as this test found them
        if loading_bars:
            transformers.utils.logging.enable_progress_bar()
    assert "100%" in capfd.readouterr().err
    assert not huggingface_hub.utils.are_progress_bars_disabled()
