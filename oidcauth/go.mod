module github.com/eventflows/flows/oidcauth

go 1.26.0

require github.com/eventflows/flows v0.1.0

require go.uber.org/goleak v1.3.0

require go.yaml.in/yaml/v3 v3.0.5 // indirect

require (
	github.com/antlr/antlr4/runtime/Go/antlr v1.4.10 // indirect
	github.com/cloudevents/sdk-go/sql/v2 v2.16.2 // indirect
	golang.org/x/time v0.16.0 // indirect
)

require (
	github.com/cloudevents/sdk-go/v2 v2.16.2 // indirect
	github.com/coreos/go-oidc/v3 v3.21.0
	github.com/go-jose/go-jose/v4 v4.1.4
	github.com/google/uuid v1.6.0 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	github.com/robfig/cron/v3 v3.0.1 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.uber.org/zap v1.27.0 // indirect
	golang.org/x/oauth2 v0.36.0
)
