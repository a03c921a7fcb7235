/* A stand-in libnvidia-ml.so.1 for tests: the real pynvml bindings load it like the driver's.
 *
 * Devices come from the text file named by $FAKE_NVML_STATE, re-read on every call so the
 * test drives the counters while a meter runs. One line per device (line order = index):
 *
 *   <uuid> <pci-device-id-hex> <energy-mJ> <power-mW> <instant-mW> <flags> <name ...>
 *
 * flags: 1 energy counter supported, 2 instantaneous power field supported,
 *        4 energy call fails (NVML_ERROR_UNKNOWN), 8 power calls fail (NVML_ERROR_UNKNOWN),
 *        16 GPU is lost (every device call fails with NVML_ERROR_GPU_IS_LOST).
 *
 * Live mode (for the GPU validation kit's tests): with $FAKE_NVML_LIVE = "<t0> <gain> <period-ms>"
 * the energy counter runs on the wall clock, as a real board's does: it reads
 * energy-mJ + gain x power-mW x (seconds since the Unix time t0, rounded down to the update
 * period). gain 1 makes the counter agree with the power readings; any other value makes them
 * disagree by that factor.
 *
 * Slow NVML (as in some VMs, where a counter read takes milliseconds): $FAKE_NVML_DELAY_US
 * makes every energy and power read take that long, half before and half after the moment it
 * reads (so the value is the one at the call's midpoint). Counting: with $FAKE_NVML_CALLS
 * naming a file, each of those reads appends "<thread id> <call>" to it, so a test can tell
 * which thread read NVML.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/syscall.h>

#define OK 0
#define ERR_INVALID_ARGUMENT 2
#define ERR_NOT_SUPPORTED 3
#define ERR_NOT_FOUND 6
#define ERR_GPU_IS_LOST 15
#define ERR_UNKNOWN 999
#define MAX_DEV 16
#define FI_DEV_POWER_INSTANT 186

typedef struct {
    char uuid[96];
    unsigned pci;
    unsigned long long energy_mj;
    unsigned power_mw, instant_mw, flags;
    char name[96];
} dev_t_;

typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} pci_t;

typedef union {
    double dVal; unsigned uiVal; unsigned long ulVal; unsigned long long ullVal;
    long long sllVal; int siVal; unsigned short usVal;
} value_t;

typedef struct {
    unsigned fieldId, scopeId;
    long long timestamp, latencyUsec;
    int valueType, nvmlReturn;
    value_t value;
} field_t;

static dev_t_ devs[MAX_DEV];

/* Half of $FAKE_NVML_DELAY_US (a slow driver), then, once per read, a line in $FAKE_NVML_CALLS. */
static void half_delay(void) {
    const char *delay = getenv("FAKE_NVML_DELAY_US");
    long us = delay ? atol(delay) : 0;
    if (us <= 0) return;
    struct timespec ts = {(us / 2) / 1000000, ((us / 2) % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

static void count_call(const char *what) {
    const char *path = getenv("FAKE_NVML_CALLS");
    if (!path) return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return;
    char line[96];
    int n = snprintf(line, sizeof line, "%ld %s\n", (long)syscall(SYS_gettid), what);
    if (write(fd, line, (size_t)n) != n) { /* a test will see the count missing */ }
    close(fd);
}

/* Wraps one read: the delay's first half, the read, the second half, then the count. */
#define SLOW_READ(what, expr) do { half_delay(); int rc_ = (expr); half_delay(); \
    count_call(what); return rc_; } while (0)

static int load(void) {
    const char *path = getenv("FAKE_NVML_STATE");
    FILE *f = path ? fopen(path, "r") : NULL;
    int n = 0;
    char line[512];
    if (!f) return -1;
    while (n < MAX_DEV && fgets(line, sizeof line, f)) {
        dev_t_ *d = &devs[n];
        int used = 0;
        if (sscanf(line, "%95s %x %llu %u %u %u %n", d->uuid, &d->pci, &d->energy_mj,
                   &d->power_mw, &d->instant_mw, &d->flags, &used) < 6) continue;
        strncpy(d->name, line + used, sizeof d->name - 1);
        d->name[sizeof d->name - 1] = 0;
        d->name[strcspn(d->name, "\n")] = 0;
        n++;
    }
    fclose(f);
    return n;
}

static dev_t_ *get(void *handle, int *err) {
    long i = (long)handle - 1;
    int n = load();
    if (i < 0 || i >= n) { *err = ERR_INVALID_ARGUMENT; return NULL; }
    if (devs[i].flags & 16) { *err = ERR_GPU_IS_LOST; return NULL; }
    *err = OK;
    return &devs[i];
}

int nvmlInitWithFlags(unsigned flags) { (void)flags; return load() < 0 ? ERR_UNKNOWN : OK; }
int nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
int nvmlShutdown(void) { return OK; }

const char *nvmlErrorString(int r) {
    switch (r) {
    case OK: return "Success";
    case ERR_INVALID_ARGUMENT: return "Invalid Argument";
    case ERR_NOT_SUPPORTED: return "Not Supported";
    case ERR_NOT_FOUND: return "Not Found";
    case ERR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

int nvmlDeviceGetCount_v2(unsigned *count) {
    int n = load();
    if (n < 0) return ERR_UNKNOWN;
    *count = (unsigned)n;
    return OK;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned index, void **handle) {
    int n = load();
    if ((int)index >= n) return ERR_INVALID_ARGUMENT;
    *handle = (void *)(long)(index + 1);
    return OK;
}

int nvmlDeviceGetHandleByUUID(const char *uuid, void **handle) {
    int n = load();
    for (int i = 0; i < n; i++)
        if (strcmp(devs[i].uuid, uuid) == 0) { *handle = (void *)(long)(i + 1); return OK; }
    return ERR_NOT_FOUND;
}

int nvmlDeviceGetIndex(void *handle, unsigned *index) {
    int err; if (!get(handle, &err)) return err;
    *index = (unsigned)((long)handle - 1);
    return OK;
}

int nvmlDeviceGetName(void *handle, char *name, unsigned length) {
    int err; dev_t_ *d = get(handle, &err); if (!d) return err;
    snprintf(name, length, "%s", d->name);
    return OK;
}

int nvmlDeviceGetUUID(void *handle, char *uuid, unsigned length) {
    int err; dev_t_ *d = get(handle, &err); if (!d) return err;
    snprintf(uuid, length, "%s", d->uuid);
    return OK;
}

int nvmlDeviceGetPciInfo_v3(void *handle, pci_t *pci) {
    int err; dev_t_ *d = get(handle, &err); if (!d) return err;
    memset(pci, 0, sizeof *pci);
    pci->pciDeviceId = (d->pci << 16) | 0x10de;
    pci->bus = (unsigned)((long)handle);
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
    return OK;
}

static int energy(void *handle, unsigned long long *mj) {
    int err; dev_t_ *d = get(handle, &err); if (!d) return err;
    if (!(d->flags & 1)) return ERR_NOT_SUPPORTED;
    if (d->flags & 4) return ERR_UNKNOWN;
    *mj = d->energy_mj;
    const char *live = getenv("FAKE_NVML_LIVE");
    double t0, gain, period_ms;
    if (live && sscanf(live, "%lf %lf %lf", &t0, &gain, &period_ms) == 3 && period_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double elapsed = ts.tv_sec + ts.tv_nsec * 1e-9 - t0;
        double ticks = elapsed > 0 ? (double)(long long)(elapsed * 1000.0 / period_ms) : 0.0;
        *mj += (unsigned long long)(gain * d->power_mw * ticks * period_ms / 1000.0);
    }
    return OK;
}

int nvmlSystemGetDriverVersion(char *version, unsigned length) {
    snprintf(version, length, "%s", "999.99.99-stand-in");
    return OK;
}

int nvmlSystemGetNVMLVersion(char *version, unsigned length) {
    snprintf(version, length, "%s", "99.999.99-stand-in");
    return OK;
}

int nvmlSystemGetCudaDriverVersion(int *version) { *version = 12080; return OK; }
int nvmlSystemGetCudaDriverVersion_v2(int *version) { *version = 12080; return OK; }

static int power(void *handle, unsigned *mw) {
    int err; dev_t_ *d = get(handle, &err); if (!d) return err;
    if (d->flags & 8) return ERR_UNKNOWN;
    *mw = d->power_mw;
    return OK;
}

static int fields(void *handle, int count, field_t *values) {
    int err; dev_t_ *d = get(handle, &err); if (!d) return err;
    for (int i = 0; i < count; i++) {
        field_t *v = &values[i];
        v->timestamp = 0; v->latencyUsec = 0;
        if (v->fieldId != FI_DEV_POWER_INSTANT || !(d->flags & 2)) {
            v->nvmlReturn = ERR_NOT_SUPPORTED;
            continue;
        }
        if (d->flags & 8) { v->nvmlReturn = ERR_UNKNOWN; continue; }
        v->valueType = 1; /* unsigned int */
        v->value.uiVal = d->instant_mw;
        v->nvmlReturn = OK;
    }
    return OK;
}

int nvmlDeviceGetTotalEnergyConsumption(void *handle, unsigned long long *mj) {
    SLOW_READ("energy", energy(handle, mj));
}

int nvmlDeviceGetPowerUsage(void *handle, unsigned *mw) {
    SLOW_READ("power", power(handle, mw));
}

int nvmlDeviceGetFieldValues(void *handle, int count, field_t *values) {
    SLOW_READ("fields", fields(handle, count, values));
}
