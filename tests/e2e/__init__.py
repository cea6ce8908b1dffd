"""End-to-end tests: the real `onewindow` command in a subprocess, driven over real HTTP."""
