"""What bringing an installation to a working state means, step by step (the launcher runs these
management commands in order before it starts web, worker and beat). Plain data: the launcher reads
it before Django is set up."""

# The setup commands, in order; each is idempotent, so every start runs all of them.
SETUP_COMMANDS = (
    ("ensure_database",),
    ("migrate", "--noinput"),
    ("sync_schedules",),
    ("seed_demo",),
    ("ensure_admin",),
    ("collectstatic", "--noinput", "--verbosity", "0"),
)
