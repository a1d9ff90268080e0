"""The parts a retina model is composed of, one registry per family.

======================  ===================================================================
part                    registered names (module)
======================  ===================================================================
front end               ``flash``, ``clips`` (:mod:`.front_ends`)
core                    ``spiking``, ``relu`` (:mod:`.cores`)
readout                 ``rf``, ``linear`` (:mod:`.readouts`)
output                  ``noisy_lif``, ``noisy_lif_fano``, ``noisy_lif_fano_frozen``,
                        ``noisy_lif_fano_narrow``, ``noisy_lif_fano_again``, ``lif_population``,
                        ``softplus_poisson``, ``softplus``, ``rectified``, ``cmp``,
                        ``poisson_counts`` (:mod:`.outputs`)
======================  ===================================================================

:class:`neurocode.models.retina.RetinaModel` composes one of each from a
:class:`~neurocode.models.retina.ModelSpec`.
"""

from neurocode.models.parts.cores import CORES
from neurocode.models.parts.front_ends import FRONT_ENDS
from neurocode.models.parts.outputs import OUTPUTS
from neurocode.models.parts.readouts import READOUTS

__all__ = ["FRONT_ENDS", "CORES", "READOUTS", "OUTPUTS"]
