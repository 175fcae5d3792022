# One image for every finsent stage; compose.yaml picks the stage with the command, e.g.
#   docker run --rm finsent:local scorer
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
# Every stage, the attention model included (scoring needs no torch), from the lock: exact
# versions and hashes, so the image holds what CI tested.
RUN pip install --no-deps --require-hashes -r requirements/docker.lock \
    && pip install --no-deps --no-build-isolation .

# Run as a non-root user. /data is created here, owned by that user, so a fresh named volume
# mounted there starts out writable by it.
RUN useradd --create-home --uid 10001 finsent \
    && mkdir /data \
    && chown finsent:finsent /data
USER finsent
WORKDIR /home/finsent

EXPOSE 8501
ENTRYPOINT ["finsent"]
CMD ["--help"]
