"""The labelled data: readers (CSV, JSON Lines, Parquet, Financial PhraseBank, CoNLL), the split into train,
validation and test, the validation rules (`text_rules`, `tag_rules`, `cross_split`, run with Great Expectations
where it can), when two texts count as the same text (`keys`), and dataset versions (`versions`: DVC hashes and
pointers, restoring the data, the git commit). Knows nothing of models."""
