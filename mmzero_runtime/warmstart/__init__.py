"""The tiny model's warm start: build it, fine-tune all three roles on procedural pictures,
measure what each role does, cache it (`build.init_tiny`).

A layer above models and render, because it renders its training pictures: loading a model
never imports it (`models.tiny_cache` only looks the cached model up).
"""
