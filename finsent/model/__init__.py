"""The attention topic-and-sentiment model: network, training, evaluation, and the scorers."""
