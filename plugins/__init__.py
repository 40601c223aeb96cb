"""transferlab's built-in plugins. Each module uses only the public hooks, as a third party would."""
