"""The screens of the review app, each with its stylesheet beside it."""
