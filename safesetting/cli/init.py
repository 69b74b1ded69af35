"""``safesetting init``: create a safe setting's home (the only way, besides ``data generate``
and ``demo``, that a home comes into being)."""

from __future__ import annotations

import click

from safesetting.cli.common import (
    Context,
    handle_errors,
    json_option,
    pass_context,
    print_json,
)


@click.command("init")
@json_option
@pass_context
@handle_errors
def init(ctx: Context, as_json: bool) -> None:
    """Create the home folder (--home, SAFESETTING_HOME, or ./safesetting-home).

    Writes the commented default policy.toml, the audit checkpoint signing key and the
    control database, and leaves anything already there as it was: running it twice is
    safe. Add the synthetic data with `safesetting data generate`. Every other command
    refuses a folder that is not a home rather than creating one.
    """
    from safesetting.control import init_home

    created = init_home(ctx.home)
    if as_json:
        print_json({"home": str(ctx.home.root), "created": created})
        return
    if created:
        click.echo(f"Safe setting home ready at {ctx.home.root}")
        click.echo(f"  created: {', '.join(created)}")
    else:
        click.echo(f"{ctx.home.root} is already a safe setting home; nothing changed")
    if not ctx.home.database.exists():
        click.echo(f"Next: safesetting --home {ctx.home.root} data generate")
