"""Team review (issue 14): assigning records to reviewers, guidelines, agreement.

Pure logic: the store owns the tables (`studio.store.decisions`, `studio.store.assignments`)."""
