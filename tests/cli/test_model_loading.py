import huggingface_hub.utils
import pytest
import transformers

from llmkit.cli.model_loading import quiet_transformers


@pytest.fixture
def bar_switches():
    """Put transformers' and huggingface_hub's progress switches back as the test found them."""
    loading = transformers.utils.logging.is_progress_bar_enabled()
    downloads_off = huggingface_hub.utils.are_progress_bars_disabled()
    yield
    (transformers.utils.logging.enable_progress_bar if loading else transformers.utils.logging.disable_progress_bar)()
    (huggingface_hub.utils.disable_progress_bars if downloads_off else huggingface_hub.utils.enable_progress_bars)()


@pytest.mark.parametrize("downloads_off", [False, True])
def test_quiet_loading_leaves_download_bars_as_they_were(bar_switches, downloads_off):
    """Loading bars go; download bars stay on, unless the user had switched them off (HF_HUB_DISABLE_PROGRESS_BARS)."""
    (huggingface_hub.utils.disable_progress_bars if downloads_off else huggingface_hub.utils.enable_progress_bars)()
    quiet_transformers()
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert huggingface_hub.utils.are_progress_bars_disabled() == downloads_off
