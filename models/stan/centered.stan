// Eight schools, centred parameterisation; priors on mu and tau chosen by data.
functions {
#include prior_lpdf.stanfunctions
}
data {
  int<lower=2> J;
  array[J] real y;
  array[J] real<lower=0> sigma;
  int<lower=1, upper=3> mu_family;
  array[2] real mu_args;
  int<lower=1, upper=5> tau_family;
  array[2] real tau_args;
}
parameters {
  real<lower=mu_lower_bound(mu_family, mu_args), upper=mu_upper_bound(mu_family, mu_args)> mu;
  real<lower=tau_lower_bound(tau_family, tau_args), upper=tau_upper_bound(tau_family, tau_args)> tau;
  array[J] real theta;
}
model {
  mu ~ mu_prior(mu_family, mu_args);
  tau ~ tau_prior(tau_family, tau_args);
  theta ~ normal(mu, tau);
  y ~ normal(theta, sigma);
}
