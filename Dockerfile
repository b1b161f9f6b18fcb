# Custom SDK container for Dataflow GPU workers running `vid2mesh run` (see docs/dataflow.md).
#
#   make image IMAGE=REGION-docker.pkg.dev/PROJECT/vid2mesh/worker   (tags :0.1.0-src-<source hash>)
#   docker push REGION-docker.pkg.dev/PROJECT/vid2mesh/worker:0.1.0-src-<source hash>
#
# The image records the hash of the source it was built from (/opt/vid2mesh/SOURCE_HASH, and
# the tag `make image` gives it): the launcher refuses an image tag of another hash, and each
# worker checks its code against the launcher's before processing (transforms/provenance.py).
#
# torch 2.15.0 from PyPI is a CUDA build whose CUDA libraries come as pinned nvidia-* wheels
# (constraints.txt), so no CUDA base image is needed: Dataflow's `install-nvidia-driver`
# service option provides the driver. Beam's worker boot entrypoint is copied from the
# official SDK image of the same Beam and Python versions.
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam_sdk

FROM python:3.11-slim-bookworm

# ffmpeg decodes the clips; libgl1/libglib2.0-0 are OpenCV's runtime libraries.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    YOLO_OFFLINE=1 \
    YOLO_CONFIG_DIR=/tmp/ultralytics \
    MPLCONFIGDIR=/tmp/matplotlib \
    VID2MESH_CACHE=/opt/vid2mesh/cache

WORKDIR /opt/vid2mesh
COPY pyproject.toml constraints.txt constraints-dataflow.txt README.md ./
COPY models ./models
COPY optimize ./optimize
COPY pipeline ./pipeline
COPY transforms ./transforms
COPY beam_jobs ./beam_jobs
COPY bench ./bench

# Exact versions: constraints-dataflow.txt (constraints.txt plus the apache-beam[gcp] tree,
# the launcher's file too) pins torch/torchvision (CUDA wheels), apache-beam and every
# transitive dependency; `pip check` fails the build on any conflict.
RUN pip install --no-cache-dir "pip==26.3" \
    && pip install --no-cache-dir -c constraints-dataflow.txt ".[dataflow,export]" \
    && pip check \
    && python -c "import apache_beam, torch, models, pipeline, transforms, beam_jobs; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# The source hash the image is built from (transforms/provenance.py), and the stand-in body
# model, generated at build time so that every worker has the same bytes (a run with
# --smpl_model reads the user's file from GCS instead).
RUN python -c "from transforms.provenance import source_hash; print(source_hash())" > /opt/vid2mesh/SOURCE_HASH \
    && python -c "from models.standin import ensure_standin; print(ensure_standin('/opt/vid2mesh/cache/standin'))"

COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]
