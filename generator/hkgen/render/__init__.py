"""Stage 5, render: the layout's files rendered in memory."""
