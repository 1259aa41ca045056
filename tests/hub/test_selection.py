"""What a download asks the Hub for, as a pure function of the repository's file list and the user's flags."""

import pytest
from huggingface_hub.utils import filter_repo_objects

from llmkit.errors import ModelNotFoundError
from llmkit.hub.selection import FileSelection, gguf_quant, select_files, split_quant

GGUF_FILES = [
    ".gitattributes", "README.md", "mmproj-model-f16.gguf",
    "Model-Q2_K.gguf", "Model-Q4_K_M.gguf", "Model-q8_0.gguf",
    "BF16/Model-BF16-00001-of-00002.gguf", "BF16/Model-BF16-00002-of-00002.gguf",
]
WEIGHTS_FILES = ["config.json", "model.safetensors", "tokenizer.json", "model-Q4_K_M.gguf"]


def fetched(files, **request) -> list[str]:
    """The files `snapshot_download` fetches for this request, using huggingface_hub's own pattern filter."""
    selection = select_files("acme/model", files, **request)
    return sorted(filter_repo_objects(files, allow_patterns=selection.allow, ignore_patterns=selection.ignore))


@pytest.mark.parametrize("name, quant", [
    ("Model-Q4_K_M.gguf", "Q4_K_M"),
    ("model.q8_0.gguf", "Q8_0"),
    ("Qwen2.5-0.5B-Instruct-IQ2_XXS.gguf", "IQ2_XXS"),
    ("Llama-3.2-1B-Instruct-f16.gguf", "F16"),
    ("Meta-Llama-3-8B-Instruct-fp16.gguf", "FP16"),
    ("Phi-3.1-mini-4k-instruct-Q8_0_L.gguf", "Q8_0_L"),
    ("Q4_K_M/model-00001-of-00002.gguf", "Q4_K_M"),
    ("mmproj-model-f16.gguf", None),
    ("model.safetensors", None),
])
def test_quantisation_is_read_from_the_file_name(name, quant):
    assert gguf_quant(name) == quant


def test_quant_tag_is_split_from_the_repository_id():
    assert split_quant("bartowski/Llama-3.2-1B-GGUF:Q4_K_M") == ("bartowski/Llama-3.2-1B-GGUF", "Q4_K_M")
    assert split_quant("acme/model") == ("acme/model", None)


def test_a_gguf_repository_without_a_tag_gives_q4_k_m_only():
    assert fetched(GGUF_FILES) == ["Model-Q4_K_M.gguf"]


def test_a_tag_gives_its_quantisation_in_any_case_and_all_parts_of_a_split_file():
    assert fetched(GGUF_FILES, quant="Q8_0") == ["Model-q8_0.gguf"]
    assert fetched(GGUF_FILES, quant="bf16") == [
        "BF16/Model-BF16-00001-of-00002.gguf", "BF16/Model-BF16-00002-of-00002.gguf"
    ]


def test_an_unknown_tag_names_the_quantisations_there_are():
    with pytest.raises(ModelNotFoundError, match="no Q5_K_M GGUF file: it has BF16, Q2_K, Q4_K_M, Q8_0"):
        select_files("acme/model", GGUF_FILES, quant="Q5_K_M")


def test_several_quantisations_without_q4_k_m_must_be_chosen():
    with pytest.raises(ModelNotFoundError, match=r"several GGUF quantisations \(Q2_K, Q8_0\).*acme/model:Q2_K"):
        select_files("acme/model", ["a-Q2_K.gguf", "a-Q8_0.gguf"])
    assert fetched(["README.md", "a-Q8_0.gguf"]) == ["a-Q8_0.gguf"]


def test_a_repository_with_safetensors_leaves_its_gguf_copies():
    assert fetched(WEIGHTS_FILES) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert fetched(WEIGHTS_FILES, quant="Q4_K_M") == ["model-Q4_K_M.gguf"]


def test_include_exclude_and_names_add_up_as_in_hf_download():
    assert fetched(GGUF_FILES, include=["*Q2_K*", "*.md"]) == ["Model-Q2_K.gguf", "README.md"]
    assert fetched(GGUF_FILES, include=["*.gguf"], exclude=["BF16/*", "mmproj*"]) == [
        "Model-Q2_K.gguf", "Model-Q4_K_M.gguf", "Model-q8_0.gguf"
    ]
    assert fetched(GGUF_FILES, filenames=["README.md", "BF16/"]) == [
        "BF16/Model-BF16-00001-of-00002.gguf", "BF16/Model-BF16-00002-of-00002.gguf", "README.md"
    ]
    assert fetched(GGUF_FILES, filenames=["README.md"], quant="Q2_K") == ["Model-Q2_K.gguf", "README.md"]


def test_a_missing_file_name_is_refused_before_downloading():
    with pytest.raises(ModelNotFoundError, match="no file readme.md"):
        select_files("acme/model", GGUF_FILES, filenames=["readme.md"])


def test_offline_a_tag_becomes_a_case_blind_glob_over_the_cache():
    """Without the file list (no network), the tag still selects only its own files among those cached."""
    cached = ["Model-q4_k_m.gguf", "Model-Q8_0.gguf"]
    selection = select_files("acme/model", None, quant="Q4_K_M")
    assert list(filter_repo_objects(cached, allow_patterns=selection.allow)) == ["Model-q4_k_m.gguf"]
    assert select_files("acme/model", None, exclude=["*.bin"]) == FileSelection(None, ["*.bin"])
