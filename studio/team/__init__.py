"""Team review: several reviewers, their agreement, adjudication and provenance."""
