"""Reports built from the results model: the terminal summary, the Markdown summary (job summary,
PR comment, check run), GitHub Actions outputs and annotations, and JUnit read from other runners.

Nothing here talks to the GitHub API; that is :mod:`tiergate.github`."""
