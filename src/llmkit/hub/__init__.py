"""Find models on disk: resolve names to loadable directories, list them, and estimate their memory."""

from llmkit.hub.architecture import ModelShape, model_shape
from llmkit.hub.download import download_hf, download_modelscope
from llmkit.hub.estimate import MemoryEstimate, estimate_memory
from llmkit.hub.gguf import ProgressCallback, convert_gguf
from llmkit.hub.listing import ModelInfo, list_models
from llmkit.hub.paths import home
from llmkit.hub.registry import KNOWN_MODELS, gguf_file, known_names, resolve

__all__ = [
    "KNOWN_MODELS",
    "MemoryEstimate",
    "ModelInfo",
    "ModelShape",
    "ProgressCallback",
    "convert_gguf",
    "download_hf",
    "download_modelscope",
    "estimate_memory",
    "gguf_file",
    "home",
    "known_names",
    "list_models",
    "model_shape",
    "resolve",
]
