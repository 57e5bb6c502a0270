"""The context passed to every phase handler: settings and the long-lived clients."""

from dataclasses import dataclass

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from chargeworker.aws import Aws
from chargeworker.charges.dates import IntegrationNames
from chargeworker.clock import Clock
from chargeworker.config import Settings
from chargeworker.revio.client import RevioClient


@dataclass
class Context:
    settings: Settings
    engine: AsyncEngine
    aws: Aws
    revio: RevioClient
    clock: Clock
    worker_id: str
    http: aiohttp.ClientSession

    @property
    def integration_names(self) -> IntegrationNames:
        return IntegrationNames(
            pond=self.settings.pond_integration_name,
            telegence=self.settings.telegence_integration_name,
        )
