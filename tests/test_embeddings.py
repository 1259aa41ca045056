import numpy as np
import pytest

from llmkit.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder, resolve_embedding_model, served_embedding_models
from llmkit.errors import InvalidRequestError, ModelNotFoundError


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder.load()


def cosine(a: list[float], b: list[float]) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_default_and_its_aliases_resolve_to_the_packaged_model():
    directory = resolve_embedding_model(DEFAULT_EMBEDDING_MODEL)
    assert (directory / "modules.json").is_file()
    assert resolve_embedding_model("default") == directory
    assert resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2") == directory
    assert resolve_embedding_model(str(directory)) == directory


def test_default_model_shape(embedder):
    assert embedder.name == DEFAULT_EMBEDDING_MODEL
    assert embedder.dimension == 384
    assert embedder.max_tokens == 256
    [vector] = embedder.embed(["hello"])
    assert len(vector) == 384 and all(isinstance(x, float) for x in vector)


def test_each_model_is_loaded_once_per_device(embedder):
    assert Embedder.load("default", device="cpu") is embedder
    assert Embedder.load("sentence-transformers/all-MiniLM-L6-v2") is embedder


@pytest.mark.parametrize(
    "name",
    [
        "all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "ALL-MINILM-L6-V2",
        "Sentence-Transformers/all-minilm-l6-v2",
    ],
)
def test_the_default_answers_to_its_own_names_in_any_case(embedder, name):
    """What users type (and the openai examples use) is the packaged model, which reads its canonical name."""
    assert Embedder.load(name) is embedder and embedder.name == DEFAULT_EMBEDDING_MODEL


def test_paraphrases_are_closer_than_unrelated_texts(embedder):
    guitar, paraphrase, stocks = embedder.embed(
        ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply on Monday."]
    )
    assert cosine(guitar, paraphrase) > 0.6
    assert cosine(guitar, paraphrase) > cosine(guitar, stocks) + 0.3


def test_chinese_text_gives_a_finite_unit_vector(embedder):
    [vector] = embedder.embed(["今天天气很好，我们去公园散步吧。"])
    vector = np.asarray(vector)
    assert np.isfinite(vector).all()
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_batches_keep_input_order(embedder):
    # Mixed lengths: sentence-transformers sorts by length inside `encode` and must restore the order.
    texts = ["a much longer sentence about a cat sitting on a warm mat in the sun", "dog", "two birds", "fish swim"]
    batched = embedder.embed(texts, batch_size=2)
    one_by_one = [embedder.embed([text])[0] for text in texts]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_unnormalized_vectors_point_the_same_way(embedder):
    text = ["Someone plays the guitar."]
    assert cosine(embedder.embed(text, normalize=False)[0], embedder.embed(text)[0]) == pytest.approx(1.0, abs=1e-5)


def test_token_counts_grow_with_text_and_stop_at_max_tokens(embedder):
    short, longer, huge = embedder.count_tokens(["Hi.", "A man is playing a guitar on the street.", "word " * 1000])
    assert 0 < short < longer
    assert huge == embedder.max_tokens
    assert embedder.count_tokens(["今天天气很好"])[0] > 2  # more than [CLS] and [SEP]


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "empty"),
        ("a bare string", "list of strings"),
        (None, "list of strings"),
        (["fine", 3], r"input\[1\] is a int"),
        (["fine", ""], r"input\[1\] is an empty string"),
    ],
)
def test_bad_input_is_an_invalid_request(embedder, texts, message):
    with pytest.raises(InvalidRequestError, match=message):
        embedder.embed(texts)
    with pytest.raises(InvalidRequestError, match=message):
        embedder.count_tokens(texts)


def test_batch_size_must_be_positive(embedder):
    with pytest.raises(InvalidRequestError, match="batch_size"):
        embedder.embed(["hello"], batch_size=0)


def test_unknown_name_lists_what_works():
    with pytest.raises(ModelNotFoundError, match=DEFAULT_EMBEDDING_MODEL):
        Embedder.load("no-such-embedder")


def test_hub_id_not_cached_offline_is_not_found_and_says_what_to_do():
    """Offline, a model missing from the cache may or may not exist on the hub: it is not available (a 404 on the
    server, not a 503), and the message names the models that are, and how to download."""
    # conftest sets HF_HUB_OFFLINE=1 before huggingface_hub is imported.
    with pytest.raises(ModelNotFoundError) as error:
        Embedder.load("acme/no-such-embedder")
    message = str(error.value)
    assert "'acme/no-such-embedder' is not available offline" in message
    assert "HF_ENDPOINT" in message
    assert message.endswith(f"embedding models available here: {DEFAULT_EMBEDDING_MODEL}")
    assert served_embedding_models() == [DEFAULT_EMBEDDING_MODEL]


def test_folder_without_a_model_is_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not a model directory"):
        Embedder.load(str(tmp_path))
