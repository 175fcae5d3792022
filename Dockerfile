# One image for every finsent stage; compose.yaml picks the stage with the command, e.g.
#   docker run --rm finsent:local scorer
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
# Every stage, the attention model included. torch comes from its CPU-only index first, which
# keeps the CUDA libraries (gigabytes) out of an image that never sees a GPU.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch \
    && pip install ".[model,lexicon,dashboard]"

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
