import pytest

from mlbench.sizes import SizeError, format_bytes, parse_size, parse_sizes


@pytest.mark.parametrize(
    "text, value",
    [
        ("8", 8),
        ("64K", 65536),
        ("64k", 65536),
        ("1MiB", 1 << 20),
        ("1mib", 1 << 20),
        ("8G", 8 << 30),
        ("2TiB", 2 << 40),
        ("512B", 512),
        ("3KB", 3072),
        (" 16M ", 16 << 20),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.5M", "-1K", "1Q", "K", "1iB", "1 M B x"])
def test_parse_size_rejects(text):
    with pytest.raises(SizeError):
        parse_size(text)


def test_lists_and_ranges():
    assert parse_sizes("1M,16M,256M") == [1 << 20, 16 << 20, 256 << 20]
    assert parse_sizes("8:64") == [8, 16, 32, 64]  # doubling, MAX included when landed on
    assert parse_sizes("8:100") == [8, 16, 32, 64]  # MAX not landed on: not included
    assert parse_sizes("1K:1M:x4") == [1024, 4096, 16384, 65536, 262144, 1 << 20]
    assert parse_sizes("256:1024:+256") == [256, 512, 768, 1024]
    assert parse_sizes("1K:2K:+512") == [1024, 1536, 2048]
    assert parse_sizes("4,1:4") == [4, 1, 2]  # order kept, duplicates dropped


@pytest.mark.parametrize("text", ["0", "8:4", "0:8", "1:8:x1", "1:8:+0", "1:8:y2", "1:2:3:4", "1,,2", "1M:2M:xabc"])
def test_bad_lists(text):
    with pytest.raises(SizeError):
        parse_sizes(text)


def test_format_bytes():
    assert format_bytes(512) == "512B"
    assert format_bytes(64 * 1024) == "64KiB"
    assert format_bytes(1536 * 1024) == "1.5MiB"
    assert format_bytes(8 << 30) == "8GiB"
