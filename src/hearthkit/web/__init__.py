"""The steward and community web app and its JSON API (`hearth serve`): a thin surface over the library."""
