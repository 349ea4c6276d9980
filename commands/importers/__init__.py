"""Importers of dataset releases (UCDP GED, ACLED): each CSV row becomes one contract report
document, ingested like any JSON Lines document."""
