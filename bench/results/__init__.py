"""Reading results: records on disk, statistics, leaderboards, the HTML report."""
