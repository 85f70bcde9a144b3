// The precompiled kernel instantiations every generated cpu library links (see ait/precompiled.h).
#define AIT_EXTERN
#include "ait/precompiled.h"
