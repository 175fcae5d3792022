# The finsent images, one target per role, every dependency from a lock (exact versions and
# hashes, so an image holds what CI tested):
#   stages     every pipeline stage: ingest, scorer (ONNX, no torch), router, aggregator,
#              alerter, notifier                          requirements/stages.lock
#   dashboard  the Streamlit dashboard                    requirements/dashboard.lock
#   full       (the default) every command, both roles    requirements/docker.lock
# compose.yaml builds stages and dashboard; `docker build .` builds full:
#   docker run --rm finsent:local scorer
#
# Layers, for the build cache: the dependencies before the code, so editing finsent/ reinstalls
# only the package. The core dependencies (base.lock) are one layer every target shares; each
# role adds its own on top (pip skips what is already installed, so the pins must agree:
# tests/test_locks.py checks that they do).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Run as a non-root user. /data is created here, owned by that user, so a fresh named volume
# mounted there starts out writable by it.
RUN useradd --create-home --uid 10001 finsent \
    && mkdir /data \
    && chown finsent:finsent /data

WORKDIR /app
COPY requirements/base.lock requirements/
RUN pip install --no-deps --require-hashes -r requirements/base.lock

# A role: its locked dependencies, then the package itself (--no-build-isolation: built with
# the locked setuptools, nothing fetched unpinned).
FROM base AS stages
COPY requirements/stages.lock requirements/
RUN pip install --no-deps --require-hashes -r requirements/stages.lock
COPY pyproject.toml README.md ./
COPY finsent finsent
RUN pip install --no-deps --no-build-isolation . && rm -rf build finsent.egg-info
USER finsent
WORKDIR /home/finsent
ENTRYPOINT ["finsent"]
CMD ["--help"]

FROM base AS dashboard
COPY requirements/dashboard.lock requirements/
RUN pip install --no-deps --require-hashes -r requirements/dashboard.lock
COPY pyproject.toml README.md ./
COPY finsent finsent
RUN pip install --no-deps --no-build-isolation . && rm -rf build finsent.egg-info
USER finsent
WORKDIR /home/finsent
EXPOSE 8501
ENTRYPOINT ["finsent"]
CMD ["dashboard", "--host", "0.0.0.0"]

FROM base AS full
COPY requirements/docker.lock requirements/
RUN pip install --no-deps --require-hashes -r requirements/docker.lock
COPY pyproject.toml README.md ./
COPY finsent finsent
RUN pip install --no-deps --no-build-isolation . && rm -rf build finsent.egg-info
USER finsent
WORKDIR /home/finsent
EXPOSE 8501
ENTRYPOINT ["finsent"]
CMD ["--help"]
