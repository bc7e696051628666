import json

from django.core.management.base import BaseCommand

from operations.demo import demo_tokens


class Command(BaseCommand):
    help = "Print the demo users' API tokens: {tenant slug: {role: token}} with --json (run seed_demo first)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help='print {"<tenant slug>": {"<role>": "<token>"}}')

    def handle(self, *args, **options):
        tokens = demo_tokens()
        if options["json"]:
            self.stdout.write(json.dumps(tokens, indent=2, sort_keys=True))
            return
        for slug, by_role in sorted(tokens.items()):
            for role, token in by_role.items():
                self.stdout.write(f"{slug:<8} {role:<17} {token}")
