"""The NVML handle of a GPU is found by its UUID: NVML ignores CUDA_VISIBLE_DEVICES."""

from mlbench.acceptance.nodecheck import _nvml_handle


class FakeNvml:
    def __init__(self):
        self.asked = []

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.asked.append(("uuid", uuid))
        if uuid != "GPU-aaaa":
            raise RuntimeError("NVML_ERROR_NOT_FOUND")
        return "handle-of-physical-gpu-4"

    def nvmlDeviceGetHandleByIndex(self, index):
        self.asked.append(("index", index))
        return f"handle-{index}"


def test_by_uuid_with_or_without_the_prefix(monkeypatch):
    nvml = FakeNvml()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4")
    assert _nvml_handle(nvml, {"index": 0, "uuid": "aaaa"}) == "handle-of-physical-gpu-4"
    assert _nvml_handle(nvml, {"index": 0, "uuid": "GPU-aaaa"}) == "handle-of-physical-gpu-4"
    assert ("index", 0) not in nvml.asked  # torch's index 0 is not NVML's index 0 here


def test_index_only_when_no_gpu_is_hidden(monkeypatch):
    nvml = FakeNvml()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert _nvml_handle(nvml, {"index": 1, "uuid": None}) is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert _nvml_handle(nvml, {"index": 1, "uuid": "zzzz"}) == "handle-1"
