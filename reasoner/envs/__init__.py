"""Multi-turn rollouts with tools: protocols (`base`), the registry, the tool environment, the
episode runner, tool-message rendering and the built-in tools (README, "Multi-turn tool use")."""
