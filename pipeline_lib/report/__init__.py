"""The report of a registered version: a model card (markdown) and a self-contained HTML page (`build`), with
their figures (`plots`) and Jinja templates (`templates/`)."""
