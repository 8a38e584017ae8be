"""Statistics: radiomics features, phenotypes, regression, mediation, SEM and simulations."""
