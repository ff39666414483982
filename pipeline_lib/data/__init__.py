"""The labelled data: readers (CSV/TSV, JSON Lines, Parquet, Financial PhraseBank, CoNLL), the stable split into
train, validation and test (`splits`), when two texts count as the same text (`keys`), the validation rules
(`text_rules`, `tag_rules`, `cross_split`, run with Great Expectations where it can) and their grouped report
(`failures`), damaged text (`text_quality`), drift between two training splits (`drift`), and dataset versions
(`versions`: DVC hashes and pointers, restoring the data, the git commit). Knows nothing of models beyond the
tokenizer a profile counts tokens with."""
