"""`hearth translate` and `hearth generate`: use a trained text model."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hearthkit.cli.common import PurposeOpt, RequesterOpt, WorkspaceOpt, console, open_catalog, user_errors

ModelArg = Annotated[str, typer.Argument(help="Model name (see `hearth models`) or a model folder.")]


@user_errors
def translate(
    model: ModelArg,
    to: Annotated[str, typer.Option("--to", help="Target language code, e.g. nah.")],
    beam: Annotated[int | None, typer.Option(help="Beam size (1 = greedy; default: the model's).")] = None,
    length_penalty: Annotated[float | None, typer.Option(
        min=0, help="Beam length penalty alpha, higher = longer output (default: the model's; choose it with "
                    "`hearth eval NAME --split valid --set length_penalty=A`).")] = None,
    mbr: Annotated[int | None, typer.Option(
        min=0, help="Minimum-Bayes-risk decoding: draw N candidates, keep the one with the highest mean chrF "
                    "against the others (0 = off; default: the model's).")] = None,
    mbr_epsilon: Annotated[float | None, typer.Option(
        min=0, max=0.99, help="MBR candidates by epsilon sampling, tokens below this probability never drawn "
                              "(0.02 is usual; 0 = the beam's n-best; default: the model's).")] = None,
    threads: Annotated[int, typer.Option(help="Torch threads (more only helps on an idle machine).")] = 1,
    purpose: PurposeOpt = "community_use",
    requester: RequesterOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Translate standard input, one sentence a line, into language --to with an mt model."""
    import torch

    from hearthkit.lineage.serving import record_use, resolve_use
    from hearthkit.recipes.load import load_model_dir

    torch.set_num_threads(threads)
    _, catalog = open_catalog(workspace)
    served = resolve_use(catalog, model, "translate", requester, purpose)  # status, inherited labels, protocols
    recipe, cfg, prep, net = load_model_dir(served.folder, "mt")
    settings = {"length_penalty": length_penalty, "mbr": mbr, "mbr_epsilon": mbr_epsilon}
    cfg = cfg.model_copy(update={k: v for k, v in settings.items() if v is not None})
    lines = [line.strip() for line in sys.stdin.read().splitlines()]
    out = recipe.translate(net, cfg, prep, [x for x in lines if x], to, beam)
    it = iter(out)
    for line in lines:
        sys.stdout.write((next(it) if line else "") + "\n")
    record_use(catalog, served.name, "translate", requester, purpose, lines=sum(1 for x in lines if x), to=to)


@user_errors
def generate(
    model: ModelArg,
    prompt: Annotated[str, typer.Option(help="Text to continue.")] = "",
    tokens: Annotated[int, typer.Option(help="Units to generate.")] = 200,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.8,
    top_k: Annotated[int, typer.Option(help="Sample among the K most likely units.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same text).")] = 0,
    purpose: PurposeOpt = "community_use",
    requester: RequesterOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Continue a prompt with an lm model."""
    from hearthkit.lineage.serving import record_use, resolve_use
    from hearthkit.recipes.load import load_model_dir

    _, catalog = open_catalog(workspace)
    served = resolve_use(catalog, model, "generate", requester, purpose)  # status, inherited labels, protocols
    recipe, _, prep, net = load_model_dir(served.folder, "lm")
    console.print(recipe.generate(net, prep, prompt, tokens, temperature, top_k, seed), highlight=False,
                  markup=False)
    record_use(catalog, served.name, "generate", requester, purpose, tokens=tokens, seed=seed)
