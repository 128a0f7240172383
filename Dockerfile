# mlbench on NVIDIA's PyTorch image: CUDA, NCCL and a matching torch come with the base, and are kept.
# Ordered for the build cache: the dependencies first, the code last, so
# a code change rebuilds only the final layers.
#
#   docker build -t mlbench .
#   docker run --rm --gpus all --ipc=host -v $PWD/results:/work/results mlbench run
FROM nvcr.io/nvidia/pytorch:25.01-py3

WORKDIR /work
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1

# 1. dependencies only (torch is already in the image and satisfies the loose requirement)
RUN pip install --no-cache-dir "numpy>=1.23" "pandas>=1.5" "matplotlib>=3.6" "click>=8.1" "nvidia-ml-py>=12"

# 2. the package metadata, then the code (changes most often: last)
COPY pyproject.toml README.md ./
COPY mlbench ./mlbench
RUN pip install --no-cache-dir --no-deps -e .

COPY scripts ./scripts
ENTRYPOINT ["mlbench"]
CMD ["run"]
