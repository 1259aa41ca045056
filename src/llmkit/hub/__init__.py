"""Find models on disk: resolve names to loadable directories, download, list, show and remove them, estimate memory."""

from llmkit.hub.architecture import ModelShape, model_shape
from llmkit.hub.download import download_hf, download_modelscope
from llmkit.hub.estimate import MemoryEstimate, estimate_memory
from llmkit.hub.gguf import ProgressCallback, convert_gguf
from llmkit.hub.listing import ModelInfo, find_model, list_models
from llmkit.hub.paths import home
from llmkit.hub.registry import KNOWN_MODELS, download, gguf_file, known_names, recommended_sampling, resolve
from llmkit.hub.removal import check_removable, remove_model

__all__ = [
    "KNOWN_MODELS",
    "MemoryEstimate",
    "ModelInfo",
    "ModelShape",
    "ProgressCallback",
    "check_removable",
    "convert_gguf",
    "download",
    "download_hf",
    "download_modelscope",
    "estimate_memory",
    "find_model",
    "gguf_file",
    "home",
    "known_names",
    "list_models",
    "model_shape",
    "recommended_sampling",
    "remove_model",
    "resolve",
]
