"""`VLLMConfig`'s platform choices and `make_backend`'s errors (pure logic: no engine starts here)."""
import pytest

from treesearch.backends.config import BackendUnavailable, VLLMConfig, make_backend


def test_cpu_defaults_are_what_the_cpu_engine_accepts():
    kw = VLLMConfig().engine_kwargs(on_gpu=False)
    assert kw["block_size"] == 32 and kw["dtype"] == "float32" and kw["enable_chunked_prefill"] is False
    assert kw["max_num_batched_tokens"] >= 16384 and kw["kv_cache_memory_bytes"] == 2 * 2**30
    assert kw["enable_prefix_caching"] is True
    assert "gpu_memory_utilization" not in kw and "enable_sleep_mode" not in kw  # no sleep mode on CPU
    long = VLLMConfig(max_model_len=32768).engine_kwargs(on_gpu=False)
    assert long["max_num_batched_tokens"] >= 32768  # a whole prompt fits one step without chunked prefill


def test_gpu_keeps_vllm_defaults_and_sleeps_between_rounds():
    kw = VLLMConfig().engine_kwargs(on_gpu=True)
    assert "block_size" not in kw and "enable_chunked_prefill" not in kw and "max_num_batched_tokens" not in kw
    assert kw["dtype"] == "auto" and kw["gpu_memory_utilization"] == 0.85 and kw["enable_sleep_mode"] is True
    assert VLLMConfig().reloads(on_gpu=True) and not VLLMConfig().reloads(on_gpu=False)
    assert "enable_sleep_mode" not in VLLMConfig(weight_update="recreate").engine_kwargs(on_gpu=True)
    assert VLLMConfig(tensor_parallel_size=2).engine_kwargs(on_gpu=True)["tensor_parallel_size"] == 2


@pytest.mark.parametrize("cfg, named", [
    (dict(block_size=48), "block_size=48"),
    (dict(max_num_batched_tokens=1024, max_model_len=4096), "max_num_batched_tokens=1024"),
])
def test_settings_the_cpu_engine_refuses_name_themselves(cfg, named):
    with pytest.raises(BackendUnavailable, match=named):
        VLLMConfig(**cfg).engine_kwargs(on_gpu=False)


@pytest.mark.parametrize("cfg, named", [
    (dict(kv_cache_gib=0), "kv_cache_gib"), (dict(weight_update="swap"), "weight_update"),
    (dict(gpu_memory_utilization=1.5), "gpu_memory_utilization"), (dict(block_size=0), "block_size"),
])
def test_bad_values_are_refused_at_construction(cfg, named):
    with pytest.raises(ValueError, match=named):
        VLLMConfig(**cfg)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'tgi'"):
        make_backend("tgi", "embedded")
