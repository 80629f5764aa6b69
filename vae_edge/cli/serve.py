"""`vae-edge serve BUNDLE`: the bundle's web app on a local web server.

Browsers run WebAssembly and fetch models only over http, and onnxruntime-web uses threads
only in a cross-origin isolated page, so a plain file:// open is not enough. Binds 127.0.0.1
by default: the app is for this machine unless `--host` says otherwise.
"""

from pathlib import Path

import click

from vae_edge.errors import BadInputError, MissingFileError
from vae_edge.registry import APPS, App


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve(bundle: Path, port: int, host: str, verbose: bool) -> None:
    """Serve BUNDLE/web/ (written by the export's web target) until Ctrl-C."""
    from vae_edge.web.server import INDEX, make_server

    web_dir = bundle / APPS[App.WEB].folder
    if not bundle.is_dir():
        raise MissingFileError(f"{bundle}: not a folder; pass the bundle folder that `vae-edge export` wrote")
    if not (web_dir / INDEX).is_file():
        raise MissingFileError(f"{web_dir}: no web app in this bundle; write it with `vae-edge export MODEL --format web`")
    if not web_dir.resolve().is_relative_to(bundle.resolve()):  # a bundle from elsewhere may link web/ to any folder
        raise BadInputError(f"{web_dir} links to {web_dir.resolve()}, outside the bundle; serve only a web app "
                            "the export wrote (`vae-edge export MODEL --format web`)")
    server = make_server(web_dir, host, port, verbose)  # a bind that fails names the fix
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Serving {web_dir} at http://{shown}:{server.server_port}/  (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
