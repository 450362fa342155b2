"""What people and machines read: logs, the progress line, messages, the HTML report."""
