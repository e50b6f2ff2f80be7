package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/validator-fencing/fencing/internal/fencing"
)

// Binding maps one ServiceAccount to the holder its sidecars act for and the
// validators they may lease. Validators empty means any validator.
type Binding struct {
	Namespace      string   `json:"namespace"`
	ServiceAccount string   `json:"serviceAccount"`
	Holder         string   `json:"holder"`
	Validators     []string `json:"validators,omitempty"`
}

// Subject is the user name the API server reports for the ServiceAccount.
func (b Binding) Subject() string {
	return "system:serviceaccount:" + b.Namespace + ":" + b.ServiceAccount
}

// String is the inline form ParseBindings reads.
func (b Binding) String() string {
	s := b.Namespace + "/" + b.ServiceAccount + "=" + b.Holder
	if len(b.Validators) > 0 {
		s += ":" + strings.Join(b.Validators, ",")
	}
	return s
}

// FormatBindings is the inverse of ParseBindings.
func FormatBindings(bs []Binding) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = b.String()
	}
	return strings.Join(parts, ";")
}

// ParseBindings reads the inline form
//
//	<namespace>/<serviceaccount>=<holder>[:<validator>,...][;...]
//
// Entries are separated by ';' or newlines; blank entries and surrounding
// spaces are ignored. Every problem is reported at once, each naming its entry.
// Validator addresses are returned in their EIP-55 form.
func ParseBindings(s string) ([]Binding, error) {
	var (
		out  []Binding
		errs []error
	)
	entries := strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' })
	for i, raw := range entries {
		e := strings.TrimSpace(raw)
		if e == "" {
			continue
		}
		b, err := parseBindingEntry(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("entry %d %q: %w", i+1, clip(e), err))
			continue
		}
		out = append(out, b)
	}
	if err := checkBindings(out); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("auth bindings (want <namespace>/<serviceaccount>=<holder>[:<validator>,...] separated by ';'): %w", errors.Join(errs...))
	}
	return out, nil
}

func parseBindingEntry(e string) (Binding, error) {
	subject, rest, ok := strings.Cut(e, "=")
	if !ok {
		return Binding{}, errors.New("missing '=' between <namespace>/<serviceaccount> and <holder>")
	}
	ns, sa, ok := strings.Cut(strings.TrimSpace(subject), "/")
	if !ok {
		return Binding{}, errors.New("missing '/' between namespace and serviceaccount")
	}
	holder, validators, _ := strings.Cut(strings.TrimSpace(rest), ":")
	b := Binding{
		Namespace:      strings.TrimSpace(ns),
		ServiceAccount: strings.TrimSpace(sa),
		Holder:         strings.TrimSpace(holder),
	}
	for v := range strings.SplitSeq(validators, ",") {
		if v = strings.TrimSpace(v); v != "" {
			b.Validators = append(b.Validators, v)
		}
	}
	return b.normalize()
}

// normalize validates b and canonicalises its validator IDs.
func (b Binding) normalize() (Binding, error) {
	var errs []error
	if msgs := validation.IsDNS1123Label(b.Namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", clip(b.Namespace), strings.Join(msgs, "; ")))
	}
	if msgs := validation.IsDNS1123Subdomain(b.ServiceAccount); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("serviceaccount %q: %s", clip(b.ServiceAccount), strings.Join(msgs, "; ")))
	}
	if err := fencing.ValidateHolder(b.Holder); err != nil {
		errs = append(errs, errors.New(messageOf(err)))
	}
	vs := make([]string, 0, len(b.Validators))
	seen := make(map[string]bool)
	for _, v := range b.Validators {
		id, err := fencing.ParseValidatorID(v)
		if err != nil {
			errs = append(errs, errors.New(messageOf(err)))
			continue
		}
		c := string(id)
		if seen[c] {
			errs = append(errs, fmt.Errorf("validator %s is listed twice", c))
			continue
		}
		seen[c] = true
		vs = append(vs, c)
	}
	if len(vs) == 0 {
		vs = nil
	}
	b.Validators = vs
	return b, errors.Join(errs...)
}

// checkBindings rejects two bindings for one ServiceAccount: which holder
// would win is not something an operator should have to guess.
func checkBindings(bs []Binding) error {
	seen := make(map[string]string)
	var errs []error
	for _, b := range bs {
		key := b.Namespace + "/" + b.ServiceAccount
		if prev, ok := seen[key]; ok {
			errs = append(errs, fmt.Errorf("serviceaccount %s is bound twice (holder %s and holder %s); bind each ServiceAccount once", key, prev, b.Holder))
			continue
		}
		seen[key] = b.Holder
	}
	return errors.Join(errs...)
}

// bindingsFile is the file form of the bindings.
type bindingsFile struct {
	Bindings []Binding `json:"bindings"`
}

// ParseBindingsFile reads bindings from a YAML or JSON file of the form
//
//	bindings:
//	  - namespace: validators
//	    serviceAccount: besu-validator-1
//	    holder: region-a
//	    validators: ["0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"]
//
// Unknown fields are errors, so a misspelt key is not silently ignored.
func ParseBindingsFile(path string) ([]Binding, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth bindings file: %w", err)
	}
	bs, err := DecodeBindings(data)
	if err != nil {
		return nil, fmt.Errorf("auth bindings file %s: %w", path, err)
	}
	return bs, nil
}

// DecodeBindings decodes the file form of ParseBindingsFile from data.
func DecodeBindings(data []byte) ([]Binding, error) {
	var f bindingsFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("want a YAML or JSON object with a list 'bindings' of {namespace, serviceAccount, holder, validators}: %w", err)
	}
	var (
		out  []Binding
		errs []error
	)
	for i, b := range f.Bindings {
		n, err := b.normalize()
		if err != nil {
			errs = append(errs, fmt.Errorf("bindings[%d] (%s/%s): %w", i, b.Namespace, b.ServiceAccount, err))
			continue
		}
		out = append(out, n)
	}
	if err := checkBindings(out); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// messageOf drops the code word prefix of a *fencing.Error, for messages that
// are embedded in a longer sentence.
func messageOf(err error) string {
	var fe *fencing.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
