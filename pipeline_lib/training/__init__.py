"""Fine-tuning machinery under the train step: the pretrained encoder and its fast tokenizer loaded safely
(`modeling`), transformers' Trainer set up from the config (`trainer`), what may train (`adaptation`: freezing,
LoRA) and the torchrun launch for more than one process (`distributed`)."""
