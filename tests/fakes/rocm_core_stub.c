/* A stand-in librocm-core.so: amdsmi_get_rocm_version() loads it from $ROCM_PATH/lib and calls
 * getROCmVersion. The version is $FAKE_ROCM_VERSION ("6.2.0"); unset means "cannot tell". */
#include <stdio.h>
#include <stdlib.h>

unsigned getROCmVersion(unsigned *major, unsigned *minor, unsigned *patch) {
    const char *v = getenv("FAKE_ROCM_VERSION");
    if (!v || sscanf(v, "%u.%u.%u", major, minor, patch) != 3) return 1;
    return 0;
}
