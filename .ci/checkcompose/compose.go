package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// topLevelKeys are the Compose specification's top-level keys.
var topLevelKeys = set("version", "name", "include", "services", "networks", "volumes", "configs", "secrets", "models")

// serviceKeys are the Compose specification's service keys.
var serviceKeys = set("annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup",
	"cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period",
	"cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec",
	"depends_on", "deploy", "develop", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search",
	"domainname", "entrypoint", "env_file", "environment", "expose", "extends", "external_links",
	"extra_hosts", "gpus", "group_add", "healthcheck", "hostname", "image", "init", "ipc", "isolation",
	"label_file", "labels", "links", "logging", "mac_address", "mem_limit", "mem_reservation",
	"mem_swappiness", "memswap_limit", "models", "network_mode", "networks", "oom_kill_disable",
	"oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start", "pre_stop", "privileged",
	"profiles", "provider", "pull_policy", "read_only", "restart", "runtime", "scale", "secrets",
	"security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls",
	"tmpfs", "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from",
	"working_dir")

var dependsConditions = set("service_started", "service_healthy", "service_completed_successfully")

func set(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, it := range items {
		m[it] = true
	}
	return m
}

// composeChecker collects the problems of one Compose file.
type composeChecker struct {
	path     string // the Compose file
	dir      string // the project directory: relative paths start here
	problems []string
	// dockerfiles already checked, by path: their stages.
	dockerfiles map[string]*dockerfile
}

func (c *composeChecker) fail(format string, args ...any) {
	c.problems = append(c.problems, c.path+": "+fmt.Sprintf(format, args...))
}

// checkComposeFile checks the Compose file at path and the Dockerfiles its
// services build. It returns a one-line summary and the problems.
func checkComposeFile(path string) (string, []string) {
	c := &composeChecker{path: path, dir: filepath.Dir(path), dockerfiles: map[string]*dockerfile{}}
	src, err := os.ReadFile(path)
	if err != nil {
		return "", []string{err.Error()}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return "", []string{path + ": not valid YAML: " + err.Error()}
	}
	if doc == nil {
		return "", []string{path + ": empty"}
	}
	for _, k := range sortedKeys(doc) {
		if !topLevelKeys[k] && !strings.HasPrefix(k, "x-") {
			c.fail("unknown top-level key %q", k)
		}
	}
	services, ok := doc["services"].(map[string]any)
	if !ok || len(services) == 0 {
		c.fail("no services")
		return "", c.problems
	}
	volumes := mapOrEmpty(c, doc["volumes"], "volumes")
	for _, kind := range []string{"configs", "secrets"} {
		defs := mapOrEmpty(c, doc[kind], kind)
		for _, name := range sortedKeys(defs) {
			def, _ := defs[name].(map[string]any)
			if file, ok := def["file"].(string); ok && !interpolated(file) && !exists(filepath.Join(c.dir, file)) {
				c.fail("%s %s: file %s does not exist", kind, name, file)
			}
		}
	}
	for _, name := range sortedKeys(services) {
		svc, ok := services[name].(map[string]any)
		if !ok {
			c.fail("service %s: not a mapping", name)
			continue
		}
		c.checkService(name, svc, services, volumes)
	}
	var built []string
	for _, p := range sortedKeys(c.dockerfiles) {
		if df := c.dockerfiles[p]; df != nil {
			built = append(built, fmt.Sprintf("%s: %d stages", p, len(df.stages)))
		}
	}
	summary := fmt.Sprintf("%d services", len(services))
	if len(built) > 0 {
		summary += "; " + strings.Join(built, ", ")
	}
	return summary, c.problems
}

func mapOrEmpty(c *composeChecker, v any, what string) map[string]any {
	if v == nil {
		return map[string]any{}
	}
	m, ok := v.(map[string]any)
	if !ok {
		c.fail("%s: not a mapping", what)
		return map[string]any{}
	}
	for k, v := range m {
		if v == nil {
			m[k] = map[string]any{}
		}
	}
	return m
}

func (c *composeChecker) checkService(name string, svc, services, volumes map[string]any) {
	for _, k := range sortedKeys(svc) {
		if !serviceKeys[k] && !strings.HasPrefix(k, "x-") {
			c.fail("service %s: unknown key %q", name, k)
		}
	}
	_, hasImage := svc["image"]
	_, hasBuild := svc["build"]
	if !hasImage && !hasBuild {
		c.fail("service %s: neither image nor build", name)
	}
	if hasBuild {
		c.checkBuild(name, svc["build"])
	}
	c.checkEnvFiles(name, svc["env_file"])
	c.checkVolumes(name, svc["volumes"], volumes)
	if r, ok := svc["restart"].(string); ok && !validRestart(r) {
		c.fail("service %s: restart %q is not no, always, on-failure[:N] or unless-stopped", name, r)
	}
	if mode, _ := svc["network_mode"].(string); mode == "host" {
		if _, ok := svc["ports"]; ok {
			c.fail("service %s: ports are ignored with network_mode: host", name)
		}
	}
	if p, ok := svc["profiles"]; ok {
		if _, ok := stringList(p); !ok {
			c.fail("service %s: profiles is not a list of strings", name)
		}
	}
	c.checkDependsOn(name, svc["depends_on"], services)
}

func validRestart(r string) bool {
	switch r {
	case "no", "always", "on-failure", "unless-stopped":
		return true
	}
	n, ok := strings.CutPrefix(r, "on-failure:")
	if !ok {
		return false
	}
	_, err := strconv.Atoi(n)
	return err == nil
}

// checkBuild checks a service's build: its context, its Dockerfile and
// target. It returns the Dockerfile (nil when it could not be read) and the
// target stage ("" for the last one).
func (c *composeChecker) checkBuild(name string, build any) (*dockerfile, string) {
	context, file, target := ".", "Dockerfile", ""
	switch b := build.(type) {
	case string:
		context = b
	case map[string]any:
		if v, ok := b["context"].(string); ok {
			context = v
		}
		if v, ok := b["dockerfile"].(string); ok {
			file = v
		}
		if v, ok := b["target"].(string); ok {
			target = v
		}
		if _, inline := b["dockerfile_inline"]; inline {
			return nil, target
		}
	default:
		c.fail("service %s: build is neither a path nor a mapping", name)
		return nil, ""
	}
	if interpolated(context) || strings.Contains(context, "://") || strings.HasPrefix(context, "git@") {
		return nil, target
	}
	ctxDir := filepath.Join(c.dir, context)
	if st, err := os.Stat(ctxDir); err != nil || !st.IsDir() {
		c.fail("service %s: build context %s is not a directory", name, context)
		return nil, target
	}
	dfPath := filepath.Join(ctxDir, file)
	if filepath.IsAbs(file) {
		dfPath = file
	}
	df, seen := c.dockerfiles[dfPath]
	if !seen {
		var problems []string
		df, problems = checkDockerfile(dfPath, ctxDir)
		c.problems = append(c.problems, problems...)
		c.dockerfiles[dfPath] = df
	}
	if df == nil {
		return nil, target
	}
	if target != "" && df.stage(target) == nil {
		c.fail("service %s: build target %q is not a stage of %s (stages: %s)", name, target, dfPath, strings.Join(df.names(), ", "))
	}
	return df, target
}

// checkEnvFiles checks that every required env_file exists: a plain entry
// is required, a {path, required} one when required is not false.
func (c *composeChecker) checkEnvFiles(name string, v any) {
	var entries []any
	switch e := v.(type) {
	case nil:
		return
	case string:
		entries = []any{e}
	case []any:
		entries = e
	default:
		c.fail("service %s: env_file is neither a path nor a list", name)
		return
	}
	for _, entry := range entries {
		path, required := "", true
		switch e := entry.(type) {
		case string:
			path = e
		case map[string]any:
			path, _ = e["path"].(string)
			if r, ok := e["required"].(bool); ok {
				required = r
			}
		}
		if path == "" {
			c.fail("service %s: env_file entry without a path", name)
			continue
		}
		if required && !interpolated(path) && !exists(filepath.Join(c.dir, path)) {
			c.fail("service %s: env_file %s does not exist (mark it required: false if it is optional)", name, path)
		}
	}
}

// checkVolumes checks a service's volumes: a bind mount's source under the
// project directory exists (absolute host paths are the host's business),
// and a named volume is declared at the top level.
func (c *composeChecker) checkVolumes(name string, v any, declared map[string]any) {
	if v == nil {
		return
	}
	list, ok := v.([]any)
	if !ok {
		c.fail("service %s: volumes is not a list", name)
		return
	}
	for _, item := range list {
		var typ, source string
		switch m := item.(type) {
		case string:
			source, _, _ = strings.Cut(m, ":")
			typ = "volume"
			if strings.HasPrefix(source, ".") || strings.HasPrefix(source, "/") || strings.HasPrefix(source, "~") {
				typ = "bind"
			}
			if !strings.Contains(m, ":") {
				continue // an anonymous volume: only a container path
			}
		case map[string]any:
			typ, _ = m["type"].(string)
			source, _ = m["source"].(string)
		default:
			c.fail("service %s: a volume is neither a string nor a mapping", name)
			continue
		}
		switch {
		case source == "" || interpolated(source):
		case typ == "bind":
			if filepath.IsAbs(source) || strings.HasPrefix(source, "~") {
				continue
			}
			if !exists(filepath.Join(c.dir, source)) {
				c.fail("service %s: bind-mounted %s does not exist", name, source)
			}
		case typ == "volume":
			if _, ok := declared[source]; !ok {
				c.fail("service %s: volume %s is not declared under the top-level volumes", name, source)
			}
		}
	}
}

// checkDependsOn checks that depends_on names services with known
// conditions, and that a service waited on until healthy has a health check.
func (c *composeChecker) checkDependsOn(name string, v any, services map[string]any) {
	deps := map[string]string{} // service -> condition
	switch d := v.(type) {
	case nil:
		return
	case []any:
		for _, s := range d {
			if s, ok := s.(string); ok {
				deps[s] = "service_started"
			}
		}
	case map[string]any:
		for s, spec := range d {
			deps[s] = "service_started"
			if m, ok := spec.(map[string]any); ok {
				if cond, ok := m["condition"].(string); ok {
					deps[s] = cond
				}
			}
		}
	default:
		c.fail("service %s: depends_on is neither a list nor a mapping", name)
		return
	}
	for _, dep := range sortedKeys(deps) {
		cond := deps[dep]
		other, ok := services[dep].(map[string]any)
		if !ok {
			c.fail("service %s: depends on %s, which is not a service", name, dep)
			continue
		}
		if !dependsConditions[cond] {
			c.fail("service %s: depends_on %s: unknown condition %q", name, dep, cond)
			continue
		}
		if cond == "service_healthy" && !c.hasHealthcheck(other) {
			c.fail("service %s: waits for %s to be healthy, but %s has no health check", name, dep, dep)
		}
	}
}

// hasHealthcheck reports whether a service has a health check: its own, or
// the HEALTHCHECK of the Dockerfile stage it builds.
func (c *composeChecker) hasHealthcheck(svc map[string]any) bool {
	if hc, ok := svc["healthcheck"].(map[string]any); ok {
		disabled, _ := hc["disable"].(bool)
		return !disabled
	}
	if _, ok := svc["build"]; !ok {
		return false
	}
	saved := c.problems
	df, target := c.checkBuild("", svc["build"])
	c.problems = saved // reported with the service itself
	if df == nil {
		return false
	}
	hc := df.healthcheck(target)
	return hc != nil && !hc.none
}

// stringList returns v as a list of strings.
func stringList(v any) ([]string, bool) {
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}
