"""The one-command acceptance run (`mlbench run`): plan, runner, node checks."""
